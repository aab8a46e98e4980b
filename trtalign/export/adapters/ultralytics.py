"""Ultralytics YOLO detectors: YOLOv5u, YOLOv8, YOLO11 (detect) and YOLOv8-OBB, YOLO11-OBB, from ``.pt``
checkpoints or architecture ``.yaml`` files (random init; ultralytics' built-in names such as ``yolov8n.yaml``
resolve without a local file, offline)."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

from trtalign.core.enums import Task
from trtalign.core.errors import InputError, ModelError, UnsupportedError, choices_text
from trtalign.core.io import sha256_file
from trtalign.core.lazy import require
from trtalign.core.logging import get_logger
from trtalign.export.adapters.base import ModelAdapter, ModelInfo, first_line
from trtalign.export.adapters.registry import register_adapter

log = get_logger(__name__)

SUPPORTED_TASKS = ("detect", "obb")
#: heads of end-to-end models: the one-to-many head (NMS node; the default: the same graph tail and quantization
#: analysis as every other family) or the one-to-one head (NMS-free: ultralytics' top-k selection, no NMS node)
HEADS = ("one2many", "one2one")


def builtin_yaml_name(name: str) -> str:
    """ultralytics' name for a built-in yaml: YOLOv5u is ultralytics' ``yolov5`` family (``yolov5nu.yaml`` ->
    ``yolov5n.yaml``); other names are unchanged."""
    return re.sub(r"^(yolov5[nslmx])u(\.ya?ml)$", r"\1\2", name)


def _builtin_yaml(name: str) -> Path | None:
    """Path of an ultralytics built-in model yaml (``yolov8n.yaml`` -> ``cfg/models/v8/yolov8.yaml``), or None."""
    name = builtin_yaml_name(name)
    try:
        import importlib.util

        spec = importlib.util.find_spec("ultralytics")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "cfg" / "models"
    stem = Path(name).stem
    unscaled = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", stem)
    for candidate in (stem, unscaled):
        hits = sorted(root.rglob(f"{candidate}.yaml"))
        if hits:
            return hits[0]
    return None


def check_loaded_file(requested: str | os.PathLike, loaded: str | os.PathLike | None, framework: str) -> None:
    """Raise ModelError unless ``framework`` loaded the file that was asked for.

    ultralytics rewrites a ``.pt`` path before loading it (``yolov5n.pt`` -> ``yolov5nu.pt``, a different model,
    found in the working directory or downloaded): the export would then carry the requested file's name and
    sha256 for another model's weights. Same resolved path, or byte-identical files, pass.
    """
    requested = Path(requested)
    if loaded is None:
        raise ModelError(f"{framework} did not say which file it loaded for {requested.name}; refusing to export a "
                         f"model that may not be {requested}")
    loaded = Path(loaded)
    if loaded.resolve() == requested.resolve():
        return
    if loaded.is_file() and sha256_file(loaded) == sha256_file(requested):
        return
    found = sha256_file(loaded)[:12] if loaded.is_file() else "missing"
    raise ModelError(f"{framework} loaded {loaded} instead of the requested {requested} (sha256 "
                     f"{sha256_file(requested)[:12]} expected, {found} found): it renames YOLOv5 checkpoint names "
                     f"(yolov5n.pt -> yolov5nu.pt); rename the file so that its name is not yolov5[nslmx].pt")


@register_adapter
class UltralyticsAdapter(ModelAdapter):
    family = "ultralytics"
    suffixes = (".pt", ".yaml", ".yml")

    def __init__(self, path: str | os.PathLike, head: str | None = None, **options: Any):
        path = Path(path)
        if head not in (None, *HEADS):
            raise InputError(f"invalid head {head!r}; valid choices: {choices_text(HEADS)}")
        #: which head of an end-to-end model (YOLOv10, YOLO26) is exported: one2many + NMS (default) or one2one
        self.head = head or HEADS[0]
        self._builtin: Path | None = None
        if not path.is_file() and path.suffix.lower() in (".yaml", ".yml") and path.parent == Path("."):
            self._builtin = _builtin_yaml(path.name)
        if self._builtin is None:
            super().__init__(path)
        else:
            self.path = path
            self._sha256 = sha256_file(self._builtin)
        self._yolo: Any = None
        self._info: ModelInfo | None = None
        self._raw_cache: dict = {}

    # ------------------------------------------------------------------ loading
    def _load(self) -> Any:
        if self._yolo is not None:
            return self._yolo
        require("torch", purpose="loading ultralytics models")
        ultralytics = require("ultralytics", purpose="loading ultralytics models")
        source = str(self.path) if self._builtin is None else builtin_yaml_name(self.path.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yolo = ultralytics.YOLO(source)
        except Exception as exc:  # any failure inside ultralytics/torch.load: a corrupt or foreign file
            raise ModelError(f"cannot load {self.path} as an ultralytics model ({first_line(exc)})") from None
        if self._builtin is None and self.path.suffix.lower() == ".pt":  # checkpoints are what ultralytics renames
            check_loaded_file(self.path, getattr(yolo, "ckpt_path", None) or getattr(yolo.model, "pt_path", None),
                              framework="ultralytics")
        task = getattr(yolo, "task", None)
        if task not in SUPPORTED_TASKS:
            raise UnsupportedError(f"{self.path.name}: task {task!r} is not supported; valid tasks: "
                                   f"{choices_text(SUPPORTED_TASKS)}")
        head = yolo.model.model[-1]
        has_one2one = getattr(head, "one2one_cv2", None) is not None
        if self.head == "one2one" and not has_one2one:
            raise InputError(f"{self.path.name}: --head one2one needs an end-to-end model (YOLOv10, YOLO26); this "
                             f"{type(head).__name__} head has no one-to-one branch")
        if self.head == "one2one" and task != "detect":
            raise UnsupportedError(f"{self.path.name}: the NMS-free one-to-one head is supported for detect models, "
                                   f"this is {task}")
        if has_one2one and getattr(head, "cv2", None) is None and self.head == "one2many":
            raise UnsupportedError(f"{self.path.name}: the one-to-many head was removed from this checkpoint (fused "
                                   f"for end-to-end inference); export it with --head one2one")
        self._yolo = yolo
        return yolo

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            yolo = self._load()
            model = yolo.model
            names = model.names
            names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
            strides = [int(s) for s in model.stride.tolist()]
            trained = (getattr(yolo, "overrides", None) or {}).get("imgsz") if self._builtin is None else None
            train_imgsz = int(trained) if isinstance(trained, (int, float)) and trained >= 32 else None
            self._info = ModelInfo(family=self.family, task=Task.parse(yolo.task), names=names, stride=max(strides),
                                   strides=strides, source=self.path.name, sha256=self.sha256,
                                   train_imgsz=train_imgsz)
        return self._info

    def layout_dict(self) -> dict:
        out = self.layout.to_dict()
        if getattr(self._load().model.model[-1], "one2one_cv2", None) is not None:
            out["head"] = self.head  # an end-to-end model: which of its two heads output0 is
        return out

    @property
    def end2end(self) -> bool:
        """True when the one-to-one head is exported (NMS-free top-k selection instead of an NMS node)."""
        return self.head == "one2one"

    def torch_model(self, fuse: bool = True) -> Any:
        """A fresh float32 eval copy of the ultralytics ``nn.Module`` (BatchNorm fused, as ultralytics predicts):
        images -> ``output0`` ``[B, 4 + C (+1), N]``. An end-to-end model runs the head chosen by ``head``; the
        one-to-one head's raw output (before ultralytics' top-k) is returned in the same cx, cy, w, h layout."""
        import copy

        model = copy.deepcopy(self._load().model).float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        det = model.model[-1]
        if getattr(det, "one2one_cv2", None) is not None:
            det.end2end = self.end2end
        if fuse and hasattr(model, "fuse"):
            model = model.fuse(verbose=False)
        if self.end2end:
            return _one2one_raw(model)
        return model

    # ------------------------------------------------------------------ export
    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        def export_model() -> Any:
            from ultralytics.nn.modules import Detect

            model = self.torch_model(fuse=True)
            for m in model.modules():
                if isinstance(m, Detect):
                    m.export, m.format, m.dynamic = True, "onnx", False
            return model

        return self.raw_onnx_from_torch(imgsz, batch, dynamic_batch, opset, export_model)


def _one2one_raw(model: Any) -> Any:
    """Wrap an end-to-end ultralytics model: images -> the one-to-one head's ``[B, 4 + C, N]`` (cx, cy, w, h,
    scores), i.e. what ultralytics' ``Detect.postprocess`` (its top-k) receives, with boxes as centre-size."""
    import types

    import torch

    det = model.model[-1]
    det.postprocess = types.MethodType(lambda self, preds: preds, det)  # keep [B, N, 4 + C] x1y1x2y2 (no top-k)

    class One2OneRaw(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            y = self.inner(x)
            y = y[0] if isinstance(y, (list, tuple)) else y
            xy1, xy2, rest = y[..., 0:2], y[..., 2:4], y[..., 4:]
            return torch.cat([(xy1 + xy2) * 0.5, xy2 - xy1, rest], dim=-1).transpose(1, 2)

    wrapped = One2OneRaw(model).eval()
    wrapped.names, wrapped.stride = getattr(model, "names", None), getattr(model, "stride", None)
    return wrapped


