"""The recipe's export steps as lazy loaders: model -> FP32 ONNX -> ranges -> Q/DQ ONNX (after Polygraphy's loaders).

A loader is a callable named for what it turns into what. Creating one does nothing; calling it runs the step once
and returns its product (later calls return the same object), and a loader accepts, where it takes an input, either
the value or another loader, so steps compose without running early::

    onnx = OnnxFromModel("yolov8n.pt", workdir="work")
    ranges = RangesFromCalibration(onnx, "calib/", num=64)
    qdq = QdqOnnxFromPlan(onnx, ranges, workdir="work")      # the default INT8 plan (export.units.default_plan)
    OrtRunner(qdq)                                         # runners take a loader too; nothing ran until here

Every step is keyed by the content it depends on (model bytes and export settings; ONNX bytes, images, method and
count; ONNX bytes, ranges and plan) and its file is named by that key, so a second run with the same inputs re-uses
the file and a changed input never does. The engine step is :class:`trtalign.engines.loaders.EngineFromOnnx`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from trtalign.core.errors import InputError
from trtalign.core.io import sha256_bytes, sha256_file
from trtalign.core.logging import get_logger

log = get_logger(__name__)


def resolve(value: Any) -> Any:
    """A loader's product, or ``value`` itself when it is not a loader (a path, a Ranges, a ModelProto)."""
    return value() if isinstance(value, Loader) or (callable(value) and not isinstance(value, type)) else value


def content_key(*parts: Any) -> str:
    """Short sha256 of JSON-able parts (paths are hashed by their bytes, not their names)."""
    def norm(p: Any) -> Any:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_file():
            return sha256_file(p)
        return p if isinstance(p, (int, float, str, bool, type(None), list, dict, tuple)) else str(p)

    return sha256_bytes(json.dumps([norm(p) for p in parts], sort_keys=True, default=str).encode())[:16]


class Loader:
    """A lazy, memoized step: ``loader()`` runs :meth:`load` once and returns its product."""

    _value: Any = None

    def __call__(self) -> Any:
        if self._value is None:
            self._value = self.load()
        return self._value

    def load(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class OnnxFromModel(Loader):
    """Model file -> FP32 ONNX with decode, in-graph NMS and trtalign metadata (``trtalign export``).

    Args:
        model: ``.pt`` / ultralytics ``.yaml`` / ``.onnx``. An ONNX that already carries trtalign metadata with NMS is
            used as it is (its NMS settings are the ones that apply); a plain ONNX needs ``layout``.
        workdir: where the exported file goes, named ``<stem>-<key>_fp32.onnx`` by the model bytes and the settings
            (re-used when it exists). ``out``: an explicit file name instead (written once per loader).
        imgsz: None = the size the model was trained at when the file records it, else 640 (as ``trtalign export``).
        batch: the largest batch; above 1 the ONNX gets a dynamic batch dimension up to it.
        nms: export NMS settings (``score_threshold``, ``iou_threshold``, ``max_det``, ``class_agnostic``).
        layout: ``ModelLayout`` of a plain ONNX. task: ``auto`` or the task the model must have.
        repo: the YOLOv5 clone that loads a YOLOv5 checkpoint (config ``model.repo``; None: the yolov5 package).

    Returns (when called): the Path of the ONNX. Raises InputError for a missing model, or a task that differs.
    """

    def __init__(self, model: str | os.PathLike, workdir: str | os.PathLike | None = None, *,
                 out: str | os.PathLike | None = None, imgsz: int | None = None, batch: int = 1,
                 nms: dict | None = None, layout: Any = None, task: str = "auto",
                 repo: str | os.PathLike | None = None):
        if workdir is None and out is None:
            raise InputError("OnnxFromModel needs a workdir or an out file")
        self.model, self.workdir, self.out = Path(model), workdir, out
        self.imgsz, self.batch, self.nms, self.layout, self.task = imgsz, int(batch), dict(nms or {}), layout, task
        self.repo = repo

    @property
    def exported(self) -> bool:
        """False when the model already is an exported ONNX (then NMS settings come from the file)."""
        if self.model.suffix.lower() != ".onnx":
            return True
        from trtalign.export.metadata import read_metadata

        meta = read_metadata(str(self.model)) or {}
        return not (meta.get("nms") and meta.get("names"))

    def load(self) -> Path:
        from trtalign.export.metadata import read_metadata

        if not self.model.is_file():
            raise InputError(f"model not found: {self.model}")
        path = self.model
        if self.exported:
            settings = {"imgsz": self.imgsz, "batch": self.batch, "nms": self.nms,
                        "layout": self.layout.model_dump(mode="json") if self.layout is not None else None}
            path = Path(self.out) if self.out is not None else \
                Path(self.workdir) / f"{self.model.stem}-{content_key(str(self.model), settings)}_fp32.onnx"
            if self.out is not None or not path.is_file():
                from trtalign.export.onnx_export import export_onnx

                export_onnx(self.model, path, imgsz=self.imgsz, dynamic_batch=self.batch if self.batch > 1 else None,
                            layout=self.layout, repo=self.repo, **self.nms)
        meta = read_metadata(str(path)) or {}
        if self.task not in ("auto", None) and meta.get("task", "detect") != self.task:
            raise InputError(f"the config says task {self.task!r} but {self.model.name} is a {meta.get('task')} "
                             f"model; set task: {meta.get('task')} (or auto)")
        return path


class RangesFromCalibration(Loader):
    """FP32 ONNX + calibration images -> :class:`trtalign.export.ranges.Ranges` (``trtalign calibrate``).

    The activation statistics are collected once per (ONNX bytes, images, count, size) and kept in ``cache_dir``
    (:func:`trtalign.export.calibrate.collect_statistics`), so :meth:`with_method` gives another method's ranges
    without running the model again.

    Args:
        onnx: path or loader of the FP32 ONNX. images: folder of images. method: a
            :class:`trtalign.core.enums.CalibrationMethod` value (default minmax). num: images used (at most).
        percentile: for ``percentile``. cache_dir: statistics cache folder (None: memory only). imgsz: for an
            ONNX with a dynamic input size and no metadata.

    Returns (when called): Ranges. Raises InputError (too few images) / ModelError (non-finite activations).
    """

    def __init__(self, onnx: Any, images: str | os.PathLike, method: str | None = None, num: int = 512,
                 percentile: float = 99.99, cache_dir: str | os.PathLike | None = None, imgsz: Any = None,
                 statistics: Callable[[], Any] | None = None):
        from trtalign.core.enums import CalibrationMethod

        self.onnx, self.images, self.num, self.percentile = onnx, Path(images), int(num), float(percentile)
        self.method = CalibrationMethod.parse(method or CalibrationMethod.default()).value
        self.cache_dir, self.imgsz = cache_dir, imgsz
        self._statistics = statistics

    def statistics(self) -> Any:
        if self._statistics is None:
            from trtalign.export.calibrate import collect_statistics

            data = collect_statistics(resolve(self.onnx), self.images, num=self.num, imgsz=self.imgsz,
                                      cache_dir=self.cache_dir)
            self._statistics = lambda: data
        return self._statistics()

    def with_method(self, method: str, percentile: float | None = None) -> "RangesFromCalibration":
        """The same statistics, another method (no second pass over the images)."""
        return RangesFromCalibration(self.onnx, self.images, method, self.num, self.percentile if percentile is None
                                     else percentile, self.cache_dir, self.imgsz, statistics=self.statistics)

    def load(self) -> Any:
        return self.statistics().ranges(self.method, self.percentile)

    def describe(self) -> str:
        return f"{self.method} ranges from up to {self.num} images of {self.images}"


class QdqOnnxFromPlan(Loader):
    """FP32 ONNX + ranges + plan -> Q/DQ ONNX (``trtalign quantize``; :func:`trtalign.export.qdq.insert_qdq`).

    Args:
        onnx, ranges: values or loaders. plan: a :class:`trtalign.export.units.Plan`; None = THE INT8 plan,
            :func:`trtalign.export.units.default_plan` (every unit INT8 but the head's output convs, which run in
            ``target``), with ``exclude`` patterns also kept in ``target``.
        mode: ``trt`` (the plan) or ``naive`` (Q/DQ on every weighted op and Concat input; ignores the plan).
        workdir: the file is ``<stem>-<key>.qdq.onnx``, keyed by ONNX bytes, ranges, plan and mode (re-used when it
            exists).

    Returns (when called): the Path of the Q/DQ ONNX; ``.plan`` is the plan applied, ``.result`` the QdqResult when
    the file was written by this loader. Raises InputError when the ranges miss a tensor the plan needs.
    """

    def __init__(self, onnx: Any, ranges: Any, workdir: str | os.PathLike, plan: Any = None, mode: str = "trt",
                 target: str = "fp16", exclude: Sequence[str] = ()):
        self.onnx, self.ranges, self.workdir, self.plan, self.mode = onnx, ranges, Path(workdir), plan, mode
        self.target, self.exclude = target, tuple(exclude)
        self.result = None

    def resolved_plan(self, model: Any) -> Any:
        from trtalign.export.units import analyze_graph, apply_excludes, default_plan

        if self.plan is not None or self.mode != "trt":
            return self.plan
        units = analyze_graph(model).units
        plan = default_plan(units, head_output=self.target)
        return apply_excludes(plan, self.exclude, units, self.target)[0] if self.exclude else plan

    def load(self) -> Path:
        from trtalign.core.io import atomic_write_bytes
        from trtalign.export.qdq import insert_qdq
        from trtalign.export.units import load_model

        src = Path(resolve(self.onnx))
        ranges = resolve(self.ranges)
        model = load_model(src)
        self.plan = self.resolved_plan(model)
        key = content_key(str(src), ranges.to_dict()["tensors"], self.plan.units if self.plan else None, self.mode)
        path = self.workdir / f"{src.stem}-{key}.{'naive' if self.mode == 'naive' else 'qdq'}.onnx"
        if not path.is_file():
            out, self.result = insert_qdq(model, ranges, self.plan, self.mode)
            atomic_write_bytes(path, out.SerializeToString())
        return path


__all__ = ["Loader", "OnnxFromModel", "RangesFromCalibration", "QdqOnnxFromPlan", "resolve", "content_key"]
