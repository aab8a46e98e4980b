"""Glue for sensitivity and fallback: a model + data -> calibrated units, tuning / validation splits, and
``evaluate(fallback) -> mAP`` callables that build the Q/DQ ONNX of a plan and run it (``ort-int8sim``).

- The FP32 ONNX (with NMS) is exported from the config's model, or reused when the model already is one.
- The data is split into a *tuning* split (sensitivity subset, calibration fallback and every choice of the search)
  and a *validation* split (only confirms the result): ``data.tune`` + ``data.val`` when both are given (they must be
  disjoint), else ``data.val`` split deterministically by a hash of each file name (:func:`split_dataset`).
- Every plan's Q/DQ ONNX is written once per plan hash (:class:`trtalign.tune.sensitivity.QdqPlanModels`); every
  (plan, split) mAP is evaluated once per session.
- The OBB model is scored with rotated mAP50-95 (``score_detections`` picks it from the dataset).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from trtalign.core.errors import ConfigError, InputError
from trtalign.core.logging import get_logger
from trtalign.tune.fallback import FallbackResult, order_by_cost, search_fallback
from trtalign.tune.sensitivity import (QdqPlanModels, SensitivityResult, SensitivityScorer, check_choice,
                                       local_sensitivity, make_plan, plan_key, LOCAL_METRICS, METRICS, MODES, TARGETS)

log = get_logger(__name__)

EVAL_NMS = {"score_threshold": 0.001, "iou_threshold": 0.7, "max_det": 300}  # mAP evaluation NMS (ultralytics val)


# --------------------------------------------------------------------------------------------------- splits
def _split_key(seed: int, file_name: str) -> str:
    return hashlib.sha256(f"{seed}:{file_name}".encode()).hexdigest()


def subset_of(dataset: Any, images: Sequence[Any]) -> Any:
    keep = {im.id for im in images}
    return replace(dataset, images=list(images), annotations={k: v for k, v in dataset.annotations.items()
                                                               if k in keep})


def split_dataset(dataset: Any, tune_fraction: float = 0.5, seed: int = 0) -> tuple[Any, Any]:
    """(tune, val): disjoint, deterministic (a hash of seed and file name orders the images), each non-empty."""
    if not 0.0 < tune_fraction < 1.0:
        raise ConfigError(f"tune_fraction must be in (0, 1), got {tune_fraction}")
    if len(dataset.images) < 2:
        raise InputError(f"splitting into tuning and validation needs >= 2 images, the dataset has "
                         f"{len(dataset.images)}")
    order = sorted(dataset.images, key=lambda im: (_split_key(seed, im.file_name), im.id))
    n_tune = min(max(1, round(len(order) * tune_fraction)), len(order) - 1)
    tune_ids = {im.id for im in order[:n_tune]}
    tune = [im for im in dataset.images if im.id in tune_ids]
    val = [im for im in dataset.images if im.id not in tune_ids]
    return subset_of(dataset, tune), subset_of(dataset, val)


def check_disjoint(tune: Any, val: Any) -> None:
    a = {Path(im.path).resolve() for im in tune.images}
    both = sorted(str(p) for p in a & {Path(im.path).resolve() for im in val.images})
    if both:
        raise InputError(f"the tuning and validation splits share {len(both)} image(s) (e.g. {both[0]}); the "
                         f"reported split must never be used to choose units: give disjoint data.tune and data.val")


# ------------------------------------------------------------------------------------------------- session
@dataclass
class SplitInfo:
    tune_images: int
    val_images: int
    tune_files: list = field(default_factory=list)
    val_files: list = field(default_factory=list)
    source: str = ""  # "hash-split of data.val" | "data.tune + data.val"

    def to_dict(self) -> dict:
        return {"tune_images": self.tune_images, "val_images": self.val_images, "source": self.source,
                "tune_files": list(self.tune_files), "val_files": list(self.val_files)}


class TuningSession:
    """Everything the sensitivity analysis and the fallback search need for one model and one dataset.

    Args:
        onnx_path: FP32 ONNX with NMS and trtalign metadata (``trtalign export``).
        tune, val: the two splits (``eval.datasets.Dataset``).
        ranges: calibrated ``export.ranges.Ranges`` of ``onnx_path``.
        workdir: where per-plan Q/DQ models are cached.
        runner_factory: ``Plan -> Runner``; default: ONNX Runtime on the plan's Q/DQ ONNX (``ort-int8sim``).
    """

    def __init__(self, onnx_path: str | os.PathLike, tune: Any, val: Any, ranges: Any, workdir: str | os.PathLike,
                 runner_factory: Callable[[Any], Any] | None = None, backend: str = "ort-int8sim",
                 split_source: str = ""):
        from trtalign.data.datasets import category_map
        from trtalign.export.metadata import read_metadata

        self.onnx_path = Path(onnx_path)
        meta = read_metadata(str(self.onnx_path)) or {}
        if not meta.get("names") or not meta.get("imgsz") or not meta.get("nms"):
            raise InputError(f"{self.onnx_path}: not an ONNX exported by `trtalign export` with NMS")
        self.names = list(meta["names"])
        self.task = str(meta.get("task", "detect"))
        self.imgsz = tuple(int(v) for v in meta["imgsz"])
        check_disjoint(tune, val)
        self.tune, self.val = tune, val
        self.ranges = ranges
        self.workdir = Path(workdir)
        self.models = QdqPlanModels(self.onnx_path, ranges, self.workdir / "plans")
        self.units = self.models.units
        self.unit_names = self.models.unit_names
        self.macs = {u.name: int(u.macs) for u in self.units}
        self.runner_factory = runner_factory or self.models.runner
        # output metrics only need output0: without decode and NMS the trial models are smaller and faster
        self.raw_models = QdqPlanModels(self.onnx_path, ranges, self.workdir / "plans", only=("output0",))
        self.output_runner_factory = self.raw_models.runner if runner_factory is None else runner_factory
        self.backend = backend
        self.class_map = category_map(self.names, tune)
        self._maps: dict[tuple[str, str], float] = {}
        self.latency_ms: dict[str, float] = {}  # plan hash -> median ms / image (meaningful on TensorRT engines)
        self.evaluations = 0  # full evaluations run (cache hits excluded), any split
        self.eval_seconds = 0.0
        self.splits = SplitInfo(len(tune), len(val), [im.file_name for im in tune.images],
                                [im.file_name for im in val.images], split_source)

    # ------------------------------------------------------------------ evaluation
    def dataset(self, split: str) -> Any:
        check_choice(split, ("tune", "val"), "split")
        return self.tune if split == "tune" else self.val

    def evaluate_plan(self, plan: Any, split: str = "tune", dataset: Any = None) -> float:
        """mAP50-95 (rotated for OBB) of ``plan`` on ``split`` (or on ``dataset``, e.g. a subset of tune)."""
        from trtalign.eval.evaluate import ort_postprocess, run_runner, score_detections

        ds = dataset if dataset is not None else self.dataset(split)
        key = (plan_key(plan.units), split if dataset is None else f"{split}:{len(ds)}")
        if key not in self._maps:
            t0 = time.perf_counter()
            with self.runner_factory(plan) as runner:
                dets, latency = run_runner(runner, ds, self.imgsz, ort_postprocess(ds.rotated), 1, self.class_map,
                                           desc=f"eval {key[1]}")
            self.latency_ms.setdefault(key[0], latency.median_ms)
            self._maps[key] = float(score_detections(ds, dets).map)
            self.evaluations += 1
            self.eval_seconds += time.perf_counter() - t0
        return self._maps[key]

    def evaluator(self, split: str, target: str = "fp16") -> Callable[[frozenset], float]:
        """``fallback set -> mAP`` on ``split`` (the callable ``search_fallback`` wants)."""
        return lambda fallback: self.evaluate_plan(make_plan(self.unit_names, fallback, target), split)

    # ------------------------------------------------------------------ sensitivity
    def inputs(self, subset: int) -> list[np.ndarray]:
        """Preprocessed ``[1, 3, H, W]`` inputs of the first ``subset`` tuning images."""
        from trtalign.core.preprocess import letterbox, read_image

        if subset < 1:
            raise InputError(f"--subset must be >= 1, got {subset}")
        return [letterbox(read_image(im.path), self.imgsz)[0] for im in self.tune.images[:subset]]

    def sensitivity(self, metric: str = "sqnr", mode: str = "disable-one", subset: int = 64, target: str = "fp16",
                    local: bool = False, hard: int = 8, gated: bool = False) -> SensitivityResult:
        """Score every unit on the first ``subset`` images of the tuning split (never on validation).
        ``gated``: output metrics on one gated Q/DQ model for every plan (see ``runtime.plan_runners``)."""
        check_choice(metric, METRICS, "sensitivity metric")
        check_choice(mode, MODES, "sensitivity mode")
        check_choice(target, TARGETS, "fallback target")
        if local:
            if metric not in LOCAL_METRICS:
                raise ConfigError(f"--local works with metrics {', '.join(LOCAL_METRICS)}, not {metric!r}")
            return local_sensitivity(self.models.model, self.ranges, self.inputs(subset), metric,
                                     analysis=self.models.analysis)
        sub = self.tune.subset(subset)
        inputs = self.inputs(subset) if metric != "map" else ()
        factory = self.output_runner_factory
        if gated and metric != "map" and self.output_runner_factory is self.raw_models.runner:
            from trtalign.runtime.plan_runners import GatedQdqModel

            factory = GatedQdqModel(self.models.model, self.ranges, self.models.analysis).runner
        scorer = SensitivityScorer(self.units, factory, inputs,
                                   map_fn=lambda plan: self.evaluate_plan(plan, "tune", dataset=sub),
                                   num_classes=len(self.names), rotated=self.task == "obb", backend=self.backend)
        result = scorer.score(metric, mode, target, hard=hard)
        result.subset = len(sub)
        return result

    # ------------------------------------------------------------------ fallback
    def fallback(self, budget: float, ranking: Sequence[str] | None = None, *,
                 sensitivity: SensitivityResult | None = None, target: str = "fp16", max_evals: int = 16,
                 latency_aware: bool = False,
                 costs: dict | None = None, journal: str | os.PathLike | None = None,
                 prune: bool = True, search: str = "gallop") -> FallbackResult:
        """Run :func:`search_fallback` on the tuning split, confirmed on validation. The ranking comes from
        ``ranking``, else ``sensitivity``; ``latency_aware`` re-orders by score per unit of cost (MACs by default)."""
        check_choice(target, TARGETS, "fallback target")
        if ranking is None and sensitivity is None:
            raise ConfigError("the fallback search needs a ranking or a sensitivity result")
        if sensitivity is not None:
            scores = sensitivity.scores()
            unknown = sorted(set(scores) - set(self.unit_names))
            missing = sorted(set(self.unit_names) - set(scores))
            if unknown or missing:
                raise InputError(f"the sensitivity ranking does not match this model's units: {len(missing)} missing "
                                 f"({', '.join(missing[:5])}), {len(unknown)} unknown ({', '.join(unknown[:5])}); "
                                 f"re-run `trtalign sensitivity` on this config")
            ranking = (order_by_cost({u: max(s, 0.0) for u, s in scores.items()}, costs or self.macs)
                       if latency_aware else sensitivity.ranking())
        ranking = list(ranking)
        return search_fallback(ranking, self.evaluator("tune", target), budget, evaluate_val=self.evaluator("val",
                               target), target=target, max_evals=max_evals, prune=prune, journal=journal,
                               fingerprint_extra={"model": self.models._salt, "tune": self.splits.tune_files,
                                                  "val": self.splits.val_files, "backend": self.backend},
                               macs=self.macs, search=search)

    def use_tensorrt(self, plugins: Sequence[str] = ()) -> "TuningSession":
        """Score and search on TensorRT INT8 engines (one per plan) instead of the ONNX Runtime emulation."""
        factory = trt_runner_factory(self.models, self.workdir / "engines", self.imgsz[0], plugins)
        self.runner_factory = self.output_runner_factory = factory
        self.backend = "trt-int8"
        return self

    def plan_latency(self, result: FallbackResult) -> dict | None:
        """``{"fp32", "int8", "final"}`` median ms / image of the search's plans when they ran on engines."""
        if not self.backend.startswith("trt"):
            return None
        plans = {"fp32": self.unit_names, "int8": [], "final": result.fallback_units}
        out = {k: self.latency_ms.get(plan_key(make_plan(self.unit_names, fb, result.target).units))
               for k, fb in plans.items()}
        return {k: v for k, v in out.items() if v is not None} or None

    def plan_for(self, result: FallbackResult, notes: dict | None = None) -> Any:
        plan = make_plan(self.unit_names, result.fallback_units, result.target)
        plan.notes = dict(notes or {})
        return plan


# ------------------------------------------------------------------------------------------ TensorRT engines
def trt_runner_factory(models: QdqPlanModels, workdir: str | os.PathLike, imgsz: int,
                       plugins: Sequence[str] = ()) -> Callable[[Any], Any]:
    """``Plan -> TrtRunner`` (``trt-int8``): the plan's Q/DQ ONNX (from ``models``) built into an engine with the
    installed TensorRT (explicit-quantization route), one engine file per plan hash in ``workdir``. Needs TensorRT
    and a GPU; pass it as ``runner_factory`` to :class:`TuningSession` to score and search on real engines."""
    import onnx

    from trtalign.core.config import PipelineConfig
    from trtalign.core.io import atomic_write_bytes
    from trtalign.engines.builder import build_engine, import_tensorrt
    from trtalign.engines.plan import make_build_plan
    from trtalign.export.graph_nms import set_nms_domain
    from trtalign.runtime.trt_runner import TrtRunner

    trt = import_tensorrt()
    workdir = Path(workdir)

    def factory(plan: Any) -> Any:
        engine = workdir / f"plan-{plan_key(plan.units)}.engine"
        if not engine.is_file():
            src = models.path_for(plan)
            trt_onnx = workdir / f"{src.stem}_trt.onnx"
            atomic_write_bytes(trt_onnx, set_nms_domain(onnx.load(str(src)), "").SerializeToString())
            config = PipelineConfig(model=trt_onnx, imgsz=int(imgsz))
            build = make_build_plan(config, trt_onnx, trt.__version__, precision="int8", unit_plan=plan.to_dict())
            atomic_write_bytes(engine, build_engine(build, trt_onnx, trt=trt).engine)
        return TrtRunner(engine, plugins=list(plugins), name="trt-int8", check_sidecar=False)

    return factory


# ------------------------------------------------------------------------------------------ from a config
def _fp32_onnx(cfg: Any, workdir: Path) -> Path:
    """The config's model as an FP32 ONNX with NMS + metadata: reused when it is one, else exported (once per
    model file hash) with evaluation NMS settings."""
    from trtalign.core.io import sha256_file
    from trtalign.export.metadata import read_metadata
    from trtalign.export.onnx_export import export_onnx

    model = Path(cfg.model)
    if not model.is_file():
        raise InputError(f"model not found: {model}")
    if model.suffix.lower() == ".onnx":
        meta = read_metadata(str(model)) or {}
        if meta.get("nms") and meta.get("names"):
            return model
    out = workdir / f"{model.stem}-{sha256_file(model)[:12]}-{cfg.imgsz}_fp32.onnx"
    if not out.is_file():
        export_onnx(model, out, imgsz=cfg.imgsz, layout=cfg.layout, **EVAL_NMS)
    return out


def _calibration_images(cfg: Any, tune: Any, workdir: Path) -> Path:
    """config calibration.images, else the dataset's train images, else links to the tuning split's images (so the
    validation images are never calibrated on)."""
    if cfg.calibration.images is not None:
        return Path(cfg.calibration.images)
    root = Path(tune.root) if tune.root else None
    for cand in ([root / "images" / "train", root.parent / "images" / "train", root.parent / "train"]
                 if root else []):
        if cand.is_dir() and any(cand.iterdir()):
            return cand
    folder = workdir / "calib_tune"
    folder.mkdir(parents=True, exist_ok=True)
    for im in tune.images:
        link = folder / Path(im.path).name
        if not link.exists():
            os.symlink(Path(im.path).resolve(), link)
    log.warning("no calibration images configured: calibrating on the tuning split's %d images", len(tune.images))
    return folder


def session_from_config(cfg: Any, workdir: str | os.PathLike | None = None, tune_fraction: float = 0.5,
                        split_seed: int = 0, backend: str = "ort") -> TuningSession:
    """PipelineConfig -> TuningSession (export or reuse the FP32 ONNX, load + split data, calibrate)."""
    from trtalign.data.datasets import load_dataset
    from trtalign.export.calibrate import calibrate
    from trtalign.export.metadata import read_metadata
    from trtalign.export.ranges import load_ranges

    check_choice(backend, ("ort", "trt"), "backend")
    workdir = Path(workdir or Path(cfg.outputs.dir) / "tuning")
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.data.val is None:
        raise ConfigError("sensitivity / fallback need labelled data: set data.val (and optionally data.tune) in the "
                          "config")
    onnx_path = _fp32_onnx(cfg, workdir)
    task = (read_metadata(str(onnx_path)) or {}).get("task", "detect")
    val = load_dataset(cfg.data.val, split="val", task=task)
    if cfg.data.tune is not None:
        tune = load_dataset(cfg.data.tune, split="val", task=task)
        check_disjoint(tune, val)
        source = "data.tune + data.val"
    else:
        tune, val = split_dataset(val, tune_fraction, split_seed)
        source = f"hash split of data.val (seed {split_seed}, tune fraction {tune_fraction})"
    if cfg.quantize.ranges is not None:
        ranges = load_ranges(cfg.quantize.ranges)
    else:
        images = _calibration_images(cfg, tune, workdir)
        ranges = calibrate(onnx_path, images, method=cfg.calibration.method, num=cfg.calibration.num,
                           percentile=cfg.calibration.percentile,
                           cache_dir=cfg.calibration.cache_dir or workdir / "calibration_cache")
    session = TuningSession(onnx_path, tune, val, ranges, workdir, split_source=source)
    return session.use_tensorrt([str(p) for p in cfg.trt.plugins]) if backend == "trt" else session


def write_fallback_outputs(session: TuningSession, result: FallbackResult, out: str | os.PathLike,
                           sensitivity: SensitivityResult | None = None, extra: dict | None = None) -> dict:
    """plan.json, model.qdq.onnx, ranges.json, engine.yaml (for ``trtalign build``), fallback.json; returns paths."""
    from trtalign.core.io import atomic_write_json, atomic_write_text
    from trtalign.export.qdq import save_qdq
    from trtalign.export.ranges import save_ranges
    from trtalign.export.units import save_plan

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = session.plan_for(result, {"budget": result.budget, "target": result.target, "status": result.status,
                                     "map_val": result.final_map_val, "map_tune": result.final_map_tune})
    paths = {"plan": out / "plan.json", "onnx": out / "model.qdq.onnx", "ranges": out / "ranges.json",
             "engine_config": out / "engine.yaml", "result": out / "fallback.json"}
    save_plan(plan, paths["plan"])
    save_ranges(session.ranges, paths["ranges"])
    qdq = save_qdq(str(session.onnx_path), session.ranges, paths["onnx"], plan=plan)
    build_cmd = f"trtalign build {paths['engine_config']} --precision int8 --onnx-int8 {paths['onnx']}"
    atomic_write_text(paths["engine_config"], "\n".join([
        "# written by `trtalign fallback`: the FP32 model with the chosen INT8 plan; build it with",
        f"#   {build_cmd}",
        f"model: {session.onnx_path.resolve()}",
        f"imgsz: {session.imgsz[0]}",
        "precisions: [int8]",
        "quantize:",
        f"  plan: {paths['plan'].resolve()}",
        f"  ranges: {paths['ranges'].resolve()}",
        "trt:",
        "  int8_route: qdq", ""]))
    payload = {"result": result.to_dict(), "plan": plan.to_dict(), "qdq": qdq.to_dict(),
               "splits": session.splits.to_dict(), "build_command": build_cmd,
               "files": {k: str(v) for k, v in paths.items()}, **(extra or {})}
    if sensitivity is not None:
        payload["sensitivity"] = sensitivity.to_dict()
    atomic_write_json(paths["result"], payload)
    return paths


__all__ = ["TuningSession", "session_from_config", "trt_runner_factory", "split_dataset", "check_disjoint", "write_fallback_outputs",
           "SplitInfo", "subset_of"]
