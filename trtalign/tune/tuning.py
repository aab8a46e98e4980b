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
from trtalign.tune.fallback import MIN_REGION_SHARE, FallbackResult, order_by_cost, search_fallback
from trtalign.export.units import apply_excludes, int8_mac_fraction
from trtalign.tune.sensitivity import (QdqPlanModels, SensitivityResult, SensitivityScorer, check_choice,
                                       local_sensitivity, make_plan, plan_key, LOCAL_METRICS, METRICS, MODES, TARGETS)

log = get_logger(__name__)



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
        tune, val: the two splits (``data.datasets.Dataset``).
        ranges: calibrated ``export.ranges.Ranges`` of ``onnx_path``.
        workdir: where per-plan Q/DQ models are cached.
        runner_factory: ``Plan -> Runner``; default: ONNX Runtime on the plan's Q/DQ ONNX (``ort-int8sim``).
    """

    def __init__(self, onnx_path: str | os.PathLike, tune: Any, val: Any, ranges: Any, workdir: str | os.PathLike,
                 runner_factory: Callable[[Any], Any] | None = None, backend: str = "ort-int8sim",
                 split_source: str = "", exclude: Sequence[str] = ()):
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
        # config quantize.exclude: units kept out of INT8 in every plan, on top of the INT8 plan's head
        self.excluded = frozenset(apply_excludes(make_plan(self.units), exclude, self.units)[1]) if exclude \
            else frozenset()
        self.runner_factory = runner_factory or self.models.runner
        # output metrics only need output0: without decode and NMS the trial models are smaller and faster
        self.raw_models = QdqPlanModels(self.onnx_path, ranges, self.workdir / "plans", only=("output0",))
        self.output_runner_factory = self.raw_models.runner if runner_factory is None else runner_factory
        self.backend = backend
        self.class_map = category_map(self.names, tune)
        self._maps: dict[tuple[str, str], float] = {}
        self._tables: dict[tuple[str, str], Any] = {}  # per-image matches of each evaluated plan (bootstrap)
        self._last_key: tuple[str, str] | None = None
        self.resamples = 1000  # paired bootstrap resamples of each interval (0: no intervals)
        self.bootstrap_seed = 0
        self.latency_ms: dict[str, float] = {}  # plan hash -> median ms / image (meaningful on TensorRT engines)
        self.evaluations = 0  # full evaluations run (cache hits excluded), any split
        self.eval_seconds = 0.0
        self.splits = SplitInfo(len(tune), len(val), [im.file_name for im in tune.images],
                                [im.file_name for im in val.images], split_source)
        self.sizing: dict | None = None  # set by size_splits

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
            if dataset is None and self.resamples > 0:
                from trtalign.eval.bootstrap import MatchTable

                self._tables[key] = MatchTable(ds, dets)
            self.evaluations += 1
            self.eval_seconds += time.perf_counter() - t0
        self._last_key = key
        return self._maps[key]

    def comparer(self, split: str, target: str = "fp16") -> Callable[[frozenset], tuple]:
        """``fallback set -> (delta, low, high)``: mAP of that plan minus the all-fallen-back plan on ``split``, with
        the paired bootstrap 95% interval over the split's images (``self.resamples`` draws, seeded); evaluates
        either plan when it has not run yet."""
        from trtalign.eval.bootstrap import bootstrap_tables

        evaluate = self.evaluator(split, target)

        def compare(fallback: frozenset) -> tuple:
            evaluate(frozenset(self.unit_names))
            ref = self._tables[self._last_key]
            evaluate(frozenset(fallback))
            ci = bootstrap_tables(self._tables[self._last_key], ref, self.resamples, self.bootstrap_seed)
            return ci.delta, ci.low, ci.high

        return compare

    def evaluator(self, split: str, target: str = "fp16") -> Callable[[frozenset], float]:
        """``fallback set -> mAP`` on ``split`` (the callable ``search_fallback`` wants)."""
        return lambda fallback: self.evaluate_plan(self.plan(fallback, target), split)

    def plan(self, fallback: Sequence[str] = (), target: str = "fp16") -> Any:
        """The INT8 plan (``export.units.make_plan``) with ``fallback`` and the excluded units in ``target``."""
        return make_plan(self.units, set(fallback) | self.excluded, target)

    # ------------------------------------------------------------------ split sizes
    def _set_splits(self, tune: Any, val: Any) -> None:
        """Use ``tune`` / ``val`` (prefixes of the splits given) from now on; mAPs of the old splits are forgotten
        (sensitivity subsets are prefixes of the tuning split, so their mAPs stay valid)."""
        changed = {name for name, old, new in (("tune", self.tune, tune), ("val", self.val, val)) if old is not new}
        self.tune, self.val = tune, val
        for key in [k for k in self._maps if k[1] in changed]:
            del self._maps[key]
            self._tables.pop(key, None)
        self.splits = replace(self.splits, tune_images=len(tune), val_images=len(val),
                              tune_files=[im.file_name for im in tune.images],
                              val_files=[im.file_name for im in val.images])

    def size_splits(self, budget: float, target: str = "fp16", pilot: int = 100, max_images: int | None = None,
                    share: float | None = None, decision: str = "interval") -> dict:
        """Pick the split sizes the budget needs from the measured noise, before the search.

        Evaluates the float plan and the INT8 plan on the first ``pilot`` tuning images, takes the 95% half-width of
        the INT8 drop's paired bootstrap interval, and keeps the first ``n`` images of the tuning and of the
        validation split, ``n = images_needed(half-width, pilot, budget)`` (the half-width shrinks as
        ``1 / sqrt(n)``; sized so that a plan whose drop is ``share`` of the budget passes the interval test), at least
        ``pilot`` and at most ``max_images`` and what each split holds. When a split holds fewer images than
        ``n``, the result says so (``enough: False`` and ``message``): the budget is then tighter than the data can
        confirm, and the search falls back more units than a larger split would need.

        ``decision`` is the search's rule (``tune.fallback.DECISIONS``): ``holdout`` sizes with a quarter of the
        budget (four times the images of ``interval``); ``auto`` sizes for ``holdout`` when both splits hold the
        images it needs and for ``interval`` otherwise (tried: keeping every image there is under ``interval``
        instead, 400 instead of 284 per split in the demo, did not confirm better and cost 40% more time: the plan an
        interval search accepts sits at the edge whatever the size). :meth:`fallback` then uses the rule chosen
        here.

        Returns ``{"pilot_images", "int8_drop_pilot", "int8_drop_pilot_ci95", "halfwidth_pilot", "images_needed",
        "tune_images", "val_images", "available": {"tune", "val"}, "enough", "message", "decision", "share",
        "evaluations", "seconds"}`` (also kept as ``self.sizing`` and written with the splits).
        """
        from trtalign.tune.fallback import DECISIONS, HOLDOUT_SHARE, decision_share, images_needed

        check_choice(decision, DECISIONS + ("auto",), "fallback decision")
        if pilot < 8:
            raise InputError(f"the pilot needs at least 8 images, got {pilot}")
        if self.resamples <= 0:
            raise InputError("sizing the splits needs bootstrap intervals (resamples > 0)")
        t0, evals0 = time.perf_counter(), self.evaluations
        full_tune, full_val = self.tune, self.val
        n_pilot = min(int(pilot), len(full_tune))
        self._set_splits(full_tune.subset(n_pilot), full_val)
        delta, low, high = self.comparer("tune", target)(frozenset())
        half = (high - low) / 2
        cap = int(max_images) if max_images else None
        if decision == "auto":  # the stricter rule when the data holds the images it needs
            room = min(len(full_tune), len(full_val), cap or len(full_tune))
            decision = "holdout" if images_needed(half, n_pilot, budget, HOLDOUT_SHARE) <= room else "interval"
        share = decision_share(decision) if share is None else float(share)
        if not 0 < share <= 1:
            raise InputError(f"share must be in (0, 1], got {share}")
        needed = images_needed(half, n_pilot, budget, share)  # the pilot itself when budget is 0
        n_tune = min(len(full_tune), max(needed, n_pilot), cap or len(full_tune))
        n_val = min(len(full_val), max(needed, n_pilot), cap or len(full_val))
        if n_tune != n_pilot or n_val != len(full_val):
            self._set_splits(full_tune.subset(n_tune), full_val.subset(n_val))
        enough = needed <= n_tune and needed <= n_val
        message = ""
        if not enough:
            message = (f"the budget {budget:.4f} needs about {needed} tuning and {needed} validation images (the INT8 "
                       f"drop measured on {n_pilot} images is {-delta:+.4f} +/- {half:.4f}, 95%); the data gives "
                       f"{len(full_tune)} tuning and {len(full_val)} validation images"
                       f"{'' if cap is None else f' (capped at {cap})'}: the search will keep more units in "
                       f"{target} than a larger split would need, and the validation interval may stay wider than "
                       f"the budget")
            log.warning(message)
        self.sizing = {"pilot_images": n_pilot, "int8_drop_pilot": -delta, "int8_drop_pilot_ci95": [-high, -low],
                       "halfwidth_pilot": half, "share": share, "images_needed": needed, "tune_images": n_tune,
                       "val_images": n_val, "available": {"tune": len(full_tune), "val": len(full_val)},
                       "enough": enough, "message": message, "decision": decision,
                       "evaluations": self.evaluations - evals0,
                       "seconds": round(time.perf_counter() - t0, 3)}
        log.info("split sizes from the noise: INT8 drop %+.4f +/- %.4f on %d pilot images -> %d needed; tune %d, "
                 "val %d", -delta, half, n_pilot, needed, n_tune, n_val)
        return dict(self.sizing)

    # ------------------------------------------------------------------ sensitivity
    def inputs(self, subset: int) -> list[np.ndarray]:
        """Preprocessed ``[1, 3, H, W]`` inputs of the first ``subset`` tuning images."""
        from trtalign.core.preprocess import letterbox, read_image

        if subset < 1:
            raise InputError(f"--subset must be >= 1, got {subset}")
        return [letterbox(read_image(im.path), self.imgsz)[0] for im in self.tune.images[:subset]]

    def sensitivity(self, metric: str = "scorebox", mode: str = "disable-one", subset: int = 64,
                    target: str = "fp16", local: bool = False, hard: int = 8, gated: bool = True) -> SensitivityResult:
        """Score every unit on the first ``subset`` images of the tuning split (never on validation).
        ``gated`` (default; output metrics on the ONNX Runtime emulation only): every trial plan runs on one gated
        Q/DQ model (``runtime.plan_runners.GatedQdqModel``: one session instead of one per plan; 141 s instead of
        670 s for the 87 passes of the OBB proxy's scorebox ranking on 16 images), in which the units a plan keeps
        in float run in FP32 rather than FP16: the ranking's numbers, not the search's (the search measures every
        plan on its own Q/DQ model with FP16 emulation)."""
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
                 prune: bool = True, search: str = "descend", decision: str = "auto",
                 min_region_share: float = MIN_REGION_SHARE) -> FallbackResult:
        """Run :func:`search_fallback` on the tuning split, confirmed on validation. The ranking comes from
        ``ranking``, else ``sensitivity``; ``latency_aware`` re-orders by score per unit of cost (MACs by default).
        ``decision``: "interval" (a plan passes when the upper end of its drop's 95% interval is within the budget),
        "holdout" (the upper end plus the half-width again), "point", or "auto" (the rule :meth:`size_splits`
        chose, "interval" when the splits were not sized); every delta is reported with its interval (unless
        ``self.resamples`` is 0)."""
        check_choice(target, TARGETS, "fallback target")
        if decision == "auto":
            decision = (self.sizing or {}).get("decision", "interval")
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
        result = search_fallback(ranking, self.evaluator("tune", target), budget, evaluate_val=self.evaluator("val",
                               target), target=target, max_evals=max_evals, prune=prune, journal=journal,
                               fingerprint_extra={"model": self.models._salt, "tune": self.splits.tune_files,
                                                  "val": self.splits.val_files, "backend": self.backend},
                               macs=self.macs, search=search, decision=decision if self.resamples > 0 else "point",
                               compare_tune=self.comparer("tune", target) if self.resamples > 0 else None,
                               compare_val=self.comparer("val", target) if self.resamples > 0 else None,
                               noise_images=len(self.tune), warn_noise=self.sizing is None,
                               order=self.unit_names, min_region_share=min_region_share)
        if self.sizing:
            result.noise["sizing"] = dict(self.sizing)
        # the INT8 MAC share of the plan that will be built (the head's output convs are out of INT8 in every plan)
        result.int8_mac_fraction = int8_mac_fraction(self.units, self.plan_for(result))
        return result

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
        out = {k: self.latency_ms.get(plan_key(self.plan(fb, result.target).units))
               for k, fb in plans.items()}
        return {k: v for k, v in out.items() if v is not None} or None

    def plan_for(self, result: FallbackResult, notes: dict | None = None) -> Any:
        plan = self.plan(result.fallback_units, result.target)
        plan.notes = dict(notes or {})
        return plan


def sizing_summary(sizing: dict) -> str:
    """One line for a :meth:`TuningSession.size_splits` result (CLI, demo, benchmarks)."""
    sz = sizing
    return (f"splits sized from the noise: INT8 drop {sz['int8_drop_pilot']:+.4f} +/- {sz['halfwidth_pilot']:.4f} "
            f"(95%) on {sz['pilot_images']} pilot tuning images -> {sz['images_needed']} images needed per split; "
            f"tune {sz['tune_images']} / val {sz['val_images']} of {sz['available']['tune']} / "
            f"{sz['available']['val']}, decision {sz.get('decision', 'interval')}"
            + ("" if sz["enough"] else " (NOT enough for the budget)"))


# ------------------------------------------------------------------------------------------ TensorRT engines
def trt_runner_factory(models: QdqPlanModels, workdir: str | os.PathLike, imgsz: int,
                       plugins: Sequence[str] = ()) -> Callable[[Any], Any]:
    """``Plan -> TrtRunner`` (``trt-int8``): the plan's Q/DQ ONNX (from ``models``) built into an engine with the
    installed TensorRT (explicit-quantization route) through :class:`trtalign.engines.loaders.EngineFromOnnx`, so the
    engine cache in ``workdir`` is keyed by the Q/DQ ONNX bytes (model, ranges and plan), the build plan, the TensorRT
    version, the GPU and the plugins, and every runner checks the engine's sidecar. Needs TensorRT and a GPU; pass it
    as ``runner_factory`` to :class:`TuningSession` to score and search on real engines."""
    from trtalign.core.config import TrtConfig
    from trtalign.engines.builder import import_tensorrt
    from trtalign.engines.loaders import EngineFromOnnx
    from trtalign.engines.plan import BuildSettings
    from trtalign.runtime.trt_runner import TrtRunner

    trt = import_tensorrt()
    plugins = [str(p) for p in plugins]

    def factory(plan: Any) -> Any:
        settings = BuildSettings(imgsz=int(imgsz), batch=1, unit_plan=plan.to_dict(), trt=TrtConfig(plugins=plugins))
        engine = EngineFromOnnx(lambda: models.path_for(plan), workdir, "int8", settings=settings, trt=trt)
        return TrtRunner(engine, plugins=plugins, name="trt-int8", trt=trt)

    return factory


# ------------------------------------------------------------------------------------------ from a config
def onnx_from_config(cfg: Any, workdir: Path) -> Any:
    """The config's FP32 ONNX loader (``export.loaders.OnnxFromModel``): the model as it is when it is an exported
    ONNX, else exported once per model bytes and settings, at the model's own size unless the config sets imgsz."""
    from trtalign.eval.evaluate import EVAL_NMS
    from trtalign.export.loaders import OnnxFromModel

    imgsz = cfg.imgsz if "imgsz" in cfg.model_fields_set else None
    return OnnxFromModel(cfg.model, workdir, imgsz=imgsz, nms=EVAL_NMS, layout=cfg.layout, task=cfg.task,
                         repo=cfg.model_repo)


def ranges_from_config(cfg: Any, onnx: Any, workdir: Path, tune: Any) -> Any:
    """``quantize.ranges``, else ``export.loaders.RangesFromCalibration`` on calibration.images, a train folder next
    to the data, or the tuning split's images (never the validation images)."""
    from trtalign.eval.evaluate import calibration_images
    from trtalign.export.loaders import RangesFromCalibration
    from trtalign.export.ranges import load_ranges

    if cfg.quantize.ranges is not None:
        return load_ranges(cfg.quantize.ranges)
    images, _ = calibration_images(tune, cfg.calibration.images, link_dir=workdir / "calib_tune")
    return RangesFromCalibration(onnx, images, cfg.calibration.method, cfg.calibration.num,
                                 cfg.calibration.percentile,
                                 cache_dir=cfg.calibration.cache_dir or workdir / "calibration_cache")


def session_from_config(cfg: Any, workdir: str | os.PathLike | None = None, tune_fraction: float = 0.5,
                        split_seed: int = 0, backend: str = "ort", onnx: Any = None,
                        ranges: Any = None) -> TuningSession:
    """PipelineConfig -> TuningSession (export or reuse the FP32 ONNX, load + split data, calibrate). ``onnx`` /
    ``ranges``: loaders or values to share an export or a calibration already done (the demo does each once)."""
    from trtalign.data.datasets import load_dataset
    from trtalign.export.loaders import resolve
    from trtalign.export.metadata import read_metadata

    check_choice(backend, ("ort", "trt"), "backend")
    workdir = Path(workdir or Path(cfg.outputs.dir) / "tuning")
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.data.val is None:
        raise ConfigError("sensitivity / fallback need labelled data: set data.val (and optionally data.tune) in the "
                          "config")
    onnx_path = resolve(onnx if onnx is not None else onnx_from_config(cfg, workdir))
    task = (read_metadata(str(onnx_path)) or {}).get("task", "detect")
    val = load_dataset(cfg.data.val, split="val", task=task)
    if cfg.data.tune is not None:
        tune = load_dataset(cfg.data.tune, split="val", task=task)
        check_disjoint(tune, val)
        source = "data.tune + data.val"
    else:
        tune, val = split_dataset(val, tune_fraction, split_seed)
        source = f"hash split of data.val (seed {split_seed}, tune fraction {tune_fraction})"
    ranges = resolve(ranges if ranges is not None else ranges_from_config(cfg, onnx_path, workdir, tune))
    session = TuningSession(onnx_path, tune, val, ranges, workdir, split_source=source,
                            exclude=cfg.quantize.exclude)
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


__all__ = ["TuningSession", "session_from_config", "sizing_summary", "trt_runner_factory", "split_dataset", "check_disjoint", "write_fallback_outputs",
           "SplitInfo", "subset_of"]
