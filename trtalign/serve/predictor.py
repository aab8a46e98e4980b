"""A model behind a runner -> Detections in original-image coordinates, one image or a batch at a time.

The server splits the work so that only inference is serialised: request threads decode and letterbox
(:meth:`Predictor.preprocess`), the batching worker stacks tensors and runs the model (:meth:`Predictor.infer_batch`),
and request threads scale boxes back (:meth:`Predictor.postprocess`). :meth:`Predictor.predict` does all three in the
calling thread, which is what "calling the runner directly" means in the load benchmark.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from trtalign.core.detections import Detections
from trtalign.core.enums import Backend
from trtalign.core.errors import ConfigError, InputError, ModelError, choices_text
from trtalign.core.logging import get_logger
from trtalign.core.preprocess import LetterboxMeta, letterbox
from trtalign.runtime.base import Runner
from trtalign.runtime.postprocess import NMS_OUTPUT_NAMES as NMS_OUTPUTS
from trtalign.runtime.postprocess import nms_outputs_to_detections
from trtalign.serve.metrics import ServerMetrics

log = get_logger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

#: what users expect of a detector's output by default (ultralytics' predict defaults: conf 0.25, max_det 300); the
#: exported NMS keeps everything down to 0.001 because mAP needs the low-score tail, a client does not
DEFAULT_SCORE_THRESHOLD = 0.25
DEFAULT_MAX_DET = 300


@dataclass(frozen=True)
class OutputFilter:
    """Serve-time filter on the model's NMS output: keep detections with ``score >= score_threshold``, at most
    ``max_det`` of them (the highest scores). It can only remove detections: the model's own NMS threshold and
    ``max_output_boxes`` stay the floor and the cap.

    Raises:
        ConfigError: a threshold outside [0, 1] or ``max_det`` < 1.
    """

    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_det: int = DEFAULT_MAX_DET

    def __post_init__(self) -> None:
        if not (isinstance(self.score_threshold, (int, float)) and 0.0 <= float(self.score_threshold) <= 1.0):
            raise ConfigError(f"score threshold must be in [0, 1], got {self.score_threshold!r}")
        if isinstance(self.max_det, bool) or not isinstance(self.max_det, (int, np.integer)) or self.max_det < 1:
            raise ConfigError(f"max detections must be an integer >= 1, got {self.max_det!r}")

    def apply(self, det: Detections) -> Detections:
        """``det`` without the detections below the threshold, the best ``max_det`` first."""
        kept = det.filter(min_score=float(self.score_threshold))
        if len(kept) > self.max_det:
            kept = kept.sorted_by_score()[: int(self.max_det)]
        return kept

    def to_dict(self) -> dict:
        return {"score_threshold": float(self.score_threshold), "max_det": int(self.max_det)}


@dataclass
class ModelInfo:
    """What ``GET /v1/model`` reports, read from the runner and the model's trtalign metadata."""

    path: str
    backend: str
    runner: str
    task: str
    names: list
    input_name: str
    input_shape: tuple  # (H, W)
    batch: int | None  # fixed batch of the model, None when dynamic
    max_batch: int
    precision: str
    build: dict = field(default_factory=dict)

    @property
    def rotated(self) -> bool:
        return self.task == "obb"

    @property
    def model_score_threshold(self) -> float | None:
        """The score threshold of the model's in-graph NMS (from its trtalign metadata; None when unknown)."""
        nms = self.build.get("nms") if isinstance(self.build, dict) else None
        value = nms.get("score_threshold") if isinstance(nms, dict) else None
        return float(value) if isinstance(value, (int, float)) else None

    def to_dict(self) -> dict:
        return {"path": self.path, "backend": self.backend, "runner": self.runner, "task": self.task,
                "classes": list(self.names), "num_classes": len(self.names), "input_name": self.input_name,
                "input_size": list(self.input_shape), "model_batch": self.batch if self.batch else "dynamic",
                "max_batch": self.max_batch, "precision": self.precision, "build": self.build}


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The ``metadata_props["trtalign"]`` JSON of an exported ONNX ({} when absent)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"cannot read ONNX {path}: {exc}") from exc
    for prop in model.metadata_props:
        if prop.key == "trtalign":
            try:
                return json.loads(prop.value)
            except json.JSONDecodeError as exc:
                raise ModelError(f"{path}: metadata_props['trtalign'] is not JSON: {exc}") from exc
    return {}


def read_engine_metadata(path: str | os.PathLike, onnx: str | os.PathLike | None = None) -> dict:
    """Model metadata for an engine: the trtalign metadata of ``onnx`` (class names, task, imgsz) when given, plus
    the build facts of the engine's sidecar (TensorRT version, GPU, precision)."""
    from trtalign.engines.cache import read_sidecar

    meta = read_onnx_metadata(onnx) if onnx is not None else {}
    sidecar = read_sidecar(path)
    if sidecar is not None:
        plan = sidecar.plan if isinstance(sidecar.plan, dict) else {}
        meta["engine"] = {"trt_version": sidecar.trt_version, "gpu": sidecar.gpu_name,
                          "compute_capability": sidecar.compute_capability, "created": sidecar.created,
                          "build_seconds": sidecar.build_seconds}
        if plan.get("precision"):
            meta["precision"] = f"trt-{plan['precision']}"
    return meta


def resolve_backend(model: str | os.PathLike, backend: Backend | str = Backend.AUTO) -> Backend:
    """``auto`` -> ``trt`` for engine files, ``ort`` for ONNX; an explicit choice must fit the file."""
    backend = Backend.parse(backend)
    suffix = Path(model).suffix.lower()
    is_engine = suffix in ENGINE_SUFFIXES
    if suffix != ".onnx" and not is_engine:
        raise InputError(f"model {model}: expected an .onnx file or a TensorRT engine "
                         f"({', '.join(ENGINE_SUFFIXES)}), got {suffix or 'no suffix'!r}")
    if backend is Backend.AUTO:
        return Backend.TRT if is_engine else Backend.ORT
    if backend is Backend.ORT and is_engine:
        raise ConfigError(f"--backend ort needs an ONNX model, got the engine {model}; use --backend trt or auto")
    if backend is Backend.TRT and not is_engine:
        raise ConfigError(f"--backend trt needs a TensorRT engine, got {model}; build one with `trtalign build`, "
                          f"or use --backend ort")
    if backend not in (Backend.ORT, Backend.TRT):
        raise ConfigError(f"serve backend must be one of {choices_text(['auto', 'ort', 'trt'])}, got {backend!s}")
    return backend


def make_runner(model: str | os.PathLike, backend: Backend, plugins: Sequence[str] = ()) -> Runner:
    """An inactive runner for ``model`` on ``backend`` (heavy imports happen here, not at module import)."""
    if backend is Backend.ORT:
        from trtalign.runtime.ort_runner import OrtRunner

        return OrtRunner(str(model))
    from trtalign.runtime.trt_runner import TrtRunner

    return TrtRunner(str(model), plugins=list(plugins))


class Predictor:
    """Runs an activated runner on letterboxed images and returns Detections in original-image pixels."""

    def __init__(self, runner: Runner, info: ModelInfo, metrics: ServerMetrics | None = None):
        self.runner = runner
        self.info = info
        self.metrics = metrics

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, model: str | os.PathLike, backend: Backend | str = Backend.AUTO, max_batch: int = 8,
             metrics: ServerMetrics | None = None, runner: Runner | None = None, plugins: Sequence[str] = (),
             onnx: str | os.PathLike | None = None) -> "Predictor":
        """Open ``model`` (ONNX or engine), activate its runner, check it has the four NMS outputs.

        For an engine, ``plugins`` are the plugin libraries it needs and ``onnx`` the ONNX it was built from (class
        names, task and input size come from that ONNX's trtalign metadata).
        """
        model = Path(model)
        if not model.is_file():
            raise InputError(f"model file not found: {model}")
        if max_batch < 1:
            raise ConfigError(f"--max-batch must be >= 1, got {max_batch}")
        chosen = resolve_backend(model, backend)
        if onnx is not None and chosen is Backend.ORT:
            raise ConfigError("--onnx is only for engines (the model is already an ONNX file)")
        meta = read_onnx_metadata(model) if chosen is Backend.ORT else read_engine_metadata(model, onnx)
        runner = runner or make_runner(model, chosen, plugins)
        runner.activate()
        try:
            info = cls._model_info(model, chosen, runner, meta, max_batch)
        except BaseException:
            runner.deactivate()
            raise
        return cls(runner, info, metrics)

    @staticmethod
    def _model_info(model: Path, backend: Backend, runner: Runner, meta: dict, max_batch: int) -> ModelInfo:
        inputs = runner.input_metadata()
        if len(inputs) != 1:
            raise ModelError(f"{model}: expected one input ('images'), got {[m.name for m in inputs]}")
        inp = inputs[0]
        if len(inp.shape) != 4:
            raise ModelError(f"{model}: input {inp.name!r} must be [B, 3, H, W], got {list(inp.shape)}")
        b, _, h, w = inp.shape
        if not isinstance(h, (int, np.integer)) or not isinstance(w, (int, np.integer)):
            imgsz = meta.get("imgsz")
            if not imgsz:
                raise ModelError(f"{model}: input size is dynamic ({list(inp.shape)}) and no trtalign metadata says "
                                 f"which size to letterbox to")
            h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
        outputs = [m.name for m in runner.output_metadata()]
        if outputs and not set(NMS_OUTPUTS) <= set(outputs):
            raise ModelError(f"{model}: serving needs the four NMS outputs {list(NMS_OUTPUTS)}, the model has "
                             f"{outputs}; export it with in-graph NMS (not --nms none)")
        fixed = int(b) if isinstance(b, (int, np.integer)) and int(b) > 0 else None
        effective = max_batch
        if fixed is not None and fixed != max_batch:
            log.warning("%s has a fixed batch of %d: batches are padded to %d (--max-batch %d ignored)", model.name,
                        fixed, fixed, max_batch)
            effective = fixed
        names = meta.get("names") or []
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names, key=int)]
        task = str(meta.get("task") or "detect")
        precision = str(meta.get("precision") or runner.name)
        build = {k: v for k, v in meta.items() if k not in ("names",)}
        return ModelInfo(path=str(model), backend=backend.value, runner=runner.name, task=task, names=list(names),
                         input_name=inp.name, input_shape=(int(h), int(w)), batch=fixed, max_batch=effective,
                         precision=precision, build=build)

    def close(self) -> None:
        self.runner.deactivate()

    # ------------------------------------------------------------------ stages
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, LetterboxMeta]:
        """BGR image -> (``[3, H, W]`` float32 tensor, letterbox meta)."""
        start = time.perf_counter()
        tensor, meta = letterbox(image, self.info.input_shape, bgr=True)
        if self.metrics is not None:
            self.metrics.preprocess_seconds.observe(time.perf_counter() - start)
        return tensor[0], meta

    def infer_batch(self, tensors: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """``[3, H, W]`` tensors -> one ``{output: array}`` per tensor. Runs in chunks of the model's batch."""
        results: list[dict[str, np.ndarray]] = []
        step = self.info.max_batch
        for start in range(0, len(tensors), step):
            chunk = list(tensors[start:start + step])
            n = len(chunk)
            if self.info.batch is not None and n < self.info.batch:  # fixed-batch model: pad with zeros
                chunk += [np.zeros_like(chunk[0])] * (self.info.batch - n)
            t0 = time.perf_counter()
            out = self.runner.infer({self.info.input_name: np.stack(chunk)})
            if self.metrics is not None:
                self.metrics.inference_seconds.observe(time.perf_counter() - t0)
            missing = [k for k in NMS_OUTPUTS if k not in out]
            if missing:
                raise ModelError(f"runner {self.runner.name!r} returned {sorted(out)}; missing {missing}")
            for i in range(n):
                results.append({k: np.asarray(out[k])[i:i + 1] for k in NMS_OUTPUTS})
        return results

    def postprocess(self, outputs: dict[str, np.ndarray], meta: LetterboxMeta) -> Detections:
        """One image's NMS outputs (batch of 1) -> Detections in original-image pixels."""
        start = time.perf_counter()
        det = nms_outputs_to_detections(outputs, [meta])[0]  # 5-column boxes: rotated
        if self.metrics is not None:
            self.metrics.postprocess_seconds.observe(time.perf_counter() - start)
        return det

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """BGR images -> Detections, all in this thread (no batching across callers)."""
        if not images:
            raise InputError("predict needs at least one image")
        prepared = [self.preprocess(im) for im in images]
        outputs = self.infer_batch([t for t, _ in prepared])
        return [self.postprocess(o, m) for o, (_, m) in zip(outputs, prepared)]

    def to_dict(self) -> dict:
        return self.info.to_dict()


def detections_payload(det: Detections, info: ModelInfo, extra: dict[str, Any] | None = None,
                       output_filter: OutputFilter | None = None) -> dict:
    """The JSON body of a detect response; ``output_filter``: the filter ``det`` went through (reported as
    ``filter`` with the model's own NMS score threshold, the floor a lower request threshold cannot go below)."""
    body = det.to_dict(names=info.names or None)
    h, w = det.data.get("orig_shape", (None, None))
    body = {"image": {"width": w, "height": h}, **body}
    if output_filter is not None:
        body["filter"] = {**output_filter.to_dict(), "model_score_threshold": info.model_score_threshold}
    if extra:
        body.update(extra)
    return body
