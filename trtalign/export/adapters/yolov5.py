"""YOLOv5 checkpoints (``yolov5n.pt`` from YOLOv5's releases, or one trained with YOLOv5's ``train.py``), loaded with
YOLOv5's own code: the ``yolov5`` package (``pip install 'trtalign[yolov5]'``) or the user's YOLOv5 clone
(``repo=`` / ``trtalign export --repo DIR`` / the environment variable ``TRTALIGN_YOLOV5_REPO``).

A YOLOv5 checkpoint is a pickle of YOLOv5's ``models.yolo.Model`` (``DetectionModel``): it unpickles only with that
code importable. The family is recognised from the file itself (:func:`pickle_modules`: the modules its pickle
references), no flag needed; ultralytics refuses these files and, for a name like ``yolov5n.pt``, silently loads
``yolov5nu.pt`` instead (see :func:`trtalign.export.adapters.ultralytics.check_loaded_file`).

Raw head: YOLOv5's ``Detect`` returns ``[B, N, 5 + C]`` (cx, cy, w, h in input pixels, objectness, class scores,
all activated). The exported ``output0`` keeps trtalign's contract ``[B, 4 + C, N]`` with score = objectness x class
score, exactly what YOLOv5's ``non_max_suppression`` ranks (``x[:, 5:] *= x[:, 4:5]``); the product is one Mul in the
graph after YOLOv5's own head, so decode, NMS, FP16 emulation and quantization treat it like any other family.

``pkg_resources``: YOLOv5 7.0.x imports ``pkg_resources`` (``utils/general.py``, only for ``parse_version``), which
setuptools >= 81 no longer ships. The extra ``trtalign[yolov5]`` pins ``setuptools<81``; when the module is missing
anyway (as here, setuptools 84), :func:`_yolov5_import_context` puts a one-function stand-in
(``parse_version = packaging.version.parse``) in ``sys.modules`` for the duration of YOLOv5's import only, and
removes it afterwards, so nothing else in the process sees a fake ``pkg_resources``.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickletools
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from trtalign.core.enums import Task
from trtalign.core.errors import DependencyError, InputError, ModelError
from trtalign.core.logging import get_logger
from trtalign.export.adapters.base import ModelAdapter, ModelInfo
from trtalign.export.adapters.registry import register_adapter

log = get_logger(__name__)

#: environment variable naming a YOLOv5 clone (the folder holding ``models/yolo.py``)
REPO_ENV = "TRTALIGN_YOLOV5_REPO"
#: module prefixes of YOLOv5's classes in a checkpoint: a clone pickles ``models.yolo``, the pip package ``yolov5.models.yolo``
YOLOV5_MODULES = ("models.yolo", "yolov5.models.yolo")
INSTALL_HINT = "pip install 'trtalign[yolov5]' (or give your YOLOv5 clone with --repo DIR / TRTALIGN_YOLOV5_REPO)"


# ---------------------------------------------------------------------------------------------------- sniffing
def pickle_modules(path: str | os.PathLike, limit: int = 1 << 26) -> set:
    """The module names a torch checkpoint's pickle references (``GLOBAL`` / ``STACK_GLOBAL`` opcodes), read without
    unpickling anything. Empty when the file is not a torch zip checkpoint or a plain pickle."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    return set()
                data = zf.read(names[0])
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except (OSError, zipfile.BadZipFile):
        return set()
    modules: set = set()
    strings: list = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(data)):
            if op.name == "GLOBAL" and isinstance(arg, str):
                modules.add(arg.split(" ", 1)[0])
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                modules.add(strings[-2])
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # truncated / not a pickle: whatever was read so far
        pass
    return modules


def is_yolov5_checkpoint(path: str | os.PathLike) -> bool:
    """True when the file pickles YOLOv5's model classes (``models.yolo.*`` or ``yolov5.models.yolo.*``)."""
    return any(m in YOLOV5_MODULES or m.startswith(tuple(p + "." for p in YOLOV5_MODULES))
               for m in pickle_modules(path))


# ---------------------------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def _yolov5_import_context(root: Path | None) -> Iterator[None]:
    """Make YOLOv5's code importable for one load: the clone's folder on ``sys.path`` (``root``), a one-function
    ``pkg_resources`` stand-in while YOLOv5 imports it (see the module docstring); ``sys.path`` is restored after
    (YOLOv5's ``models/yolo.py`` appends its own root to it on import)."""
    saved_path = list(sys.path)
    shim = None
    try:
        import pkg_resources  # noqa: F401  # setuptools < 81 still provides it
    except ImportError:
        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse  # type: ignore[attr-defined]
        shim.__doc__ = "trtalign stand-in for YOLOv5's import (parse_version only); removed after the import"
        sys.modules["pkg_resources"] = shim
    if root is not None:
        sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        if shim is not None and sys.modules.get("pkg_resources") is shim:
            del sys.modules["pkg_resources"]


def _check_repo(repo: str | os.PathLike) -> Path:
    root = Path(repo).expanduser()
    if not (root / "models" / "yolo.py").is_file():
        raise InputError(f"--repo {root} is not a YOLOv5 clone: expected {root / 'models' / 'yolo.py'}")
    loaded = sys.modules.get("models")
    if loaded is not None and getattr(loaded, "__file__", None):
        where = Path(loaded.__file__).resolve().parent.parent
        if where != root.resolve():
            raise InputError(f"a module named 'models' is already imported from {where}; YOLOv5's clone {root} "
                             f"needs that name (run in a fresh process)")
    return root


def _unpickler_module(package: bool) -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load``: with the ``yolov5`` package, a clone's top-level ``models.*`` /
    ``utils.*`` classes are looked up in ``yolov5.models.*`` / ``yolov5.utils.*`` (same code, package names)."""
    import pickle

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if package and module.split(".")[0] in ("models", "utils"):
                module = "yolov5." + module
            return super().find_class(module, name)

    mod = types.ModuleType("trtalign_yolov5_pickle")
    mod.Unpickler = Unpickler  # type: ignore[attr-defined]
    mod.load = pickle.load  # type: ignore[attr-defined]
    mod.__name__ = "pickle"
    return mod


def load_yolov5_checkpoint(path: str | os.PathLike, repo: str | os.PathLike | None = None) -> Any:
    """The float32 eval ``DetectionModel`` of a YOLOv5 checkpoint (``ema`` if present, else ``model``), unfused.

    Raises DependencyError when neither a clone nor the ``yolov5`` package is available, ModelError when the file
    does not hold a YOLOv5 model.
    """
    from trtalign.core.lazy import require

    torch = require("torch", purpose="loading YOLOv5 checkpoints")
    root = _check_repo(repo) if repo else None
    with _yolov5_import_context(root):
        if root is None:
            try:
                import yolov5.models.yolo  # noqa: F401  # the classes the unpickler will look up
            except ImportError as exc:
                raise DependencyError(f"loading a YOLOv5 checkpoint needs YOLOv5's code ({exc}); {INSTALL_HINT}") \
                    from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ckpt = torch.load(str(path), map_location="cpu", weights_only=False,
                                  pickle_module=_unpickler_module(package=root is None))
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"cannot load {Path(path).name} with YOLOv5's code "
                             f"({'clone ' + str(root) if root else 'yolov5 package'}): {type(exc).__name__}: {exc}") \
                from None
        except Exception as exc:
            raise ModelError(f"cannot read {Path(path).name} as a YOLOv5 checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else ckpt
    if model is None or not hasattr(model, "model") or not hasattr(model, "stride"):
        raise ModelError(f"{Path(path).name} holds no YOLOv5 model (keys: "
                         f"{sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__})")
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _detect_head(model: Any) -> Any:
    head = model.model[-1]
    if type(head).__name__ != "Detect":
        raise ModelError(f"the YOLOv5 model's last layer is {type(head).__name__}, expected Detect (segmentation and "
                         f"classification checkpoints are not supported)")
    return head


def canonical_head(model: Any) -> Any:
    """Wrap a YOLOv5 ``DetectionModel``: images -> ``[B, 4 + C, N]`` (cx, cy, w, h, objectness x class score)."""
    import torch

    class YoloV5Canonical(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            y = self.inner(x)
            y = y[0] if isinstance(y, (list, tuple)) else y  # [B, N, 5 + C]
            scores = y[..., 5:] * y[..., 4:5]
            return torch.cat([y[..., :4], scores], dim=-1).transpose(1, 2)

    return YoloV5Canonical(model).eval()


@register_adapter
class YoloV5Adapter(ModelAdapter):
    """A YOLOv5 ``.pt`` checkpoint (``models.yolo.DetectionModel`` pickle)."""

    family = "yolov5"
    suffixes = (".pt",)

    def __init__(self, path: str | os.PathLike, repo: str | os.PathLike | None = None, **options: Any):
        super().__init__(path)
        self.repo = repo or os.environ.get(REPO_ENV) or None
        self._model: Any = None
        self._info: ModelInfo | None = None
        self._raw_cache: dict = {}

    @classmethod
    def accepts(cls, path: Path, **options: Any) -> bool:
        return path.suffix.lower() in cls.suffixes and path.is_file() and is_yolov5_checkpoint(path)

    def _load(self) -> Any:
        if self._model is None:
            model = load_yolov5_checkpoint(self.path, self.repo)
            _detect_head(model)
            self._model = model
        return self._model

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            model = self._load()
            names = model.names
            names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)
            nc = int(_detect_head(model).nc)
            if len(names) != nc:
                raise ModelError(f"{self.path.name}: {len(names)} class names but the Detect head has {nc} classes")
            strides = [int(s) for s in model.stride.tolist()]
            self._info = ModelInfo(family=self.family, task=Task.DETECT, names=names, stride=max(strides),
                                   strides=strides, source=self.path.name, sha256=self.sha256, train_imgsz=None)
        return self._info

    def native_model(self, fuse: bool = True) -> Any:
        """A fresh copy of YOLOv5's own ``DetectionModel`` (BatchNorm fused, as YOLOv5's val/detect run it):
        images -> ``([B, N, 5 + C], ...)``."""
        import copy

        model = copy.deepcopy(self._load())
        if fuse:
            import logging

            yolo_log = logging.getLogger("yolov5")  # YOLOv5's LOGGER: fuse() logs a model summary
            level = yolo_log.level
            yolo_log.setLevel(logging.WARNING)
            try:
                model = model.fuse()
            finally:
                yolo_log.setLevel(level)
        return model.eval()

    def torch_model(self, fuse: bool = True) -> Any:
        """images -> ``output0`` ``[B, 4 + C, N]`` (YOLOv5's model + the objectness product)."""
        return canonical_head(self.native_model(fuse=fuse))

    def to_raw_onnx(self, imgsz: int | Sequence[int], batch: int = 1, dynamic_batch: bool = False,
                    opset: int = 17) -> Any:
        def export_model() -> Any:
            native = self.native_model(fuse=True)
            head = _detect_head(native)
            # as YOLOv5's export.py: no in-place ops in the head, export mode (no feature maps returned)
            head.inplace, head.export, head.dynamic = False, True, False
            return canonical_head(native)

        return self.raw_onnx_from_torch(imgsz, batch, dynamic_batch, opset, export_model)

    def layout_dict(self) -> dict:
        """The source layout (recorded in the metadata): YOLOv5's ``[B, N, 5 + C]`` folded into ``output0``."""
        return {**self.layout.to_dict(), "source_layout": {"format": "yolo-channels-last", "box": "cxcywh",
                                                            "objectness_index": 4, "scores": "activated",
                                                            "score": "objectness * class"}}
