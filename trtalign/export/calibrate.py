"""Calibration: run the FP32 ONNX in ONNX Runtime over an image folder and turn activation statistics into ranges.

Streaming and bounded: one image at a time; per observed tensor we keep min, max, max-abs, a count of non-finite
values and a 2048-bin histogram of ``|x|`` over ``[0, hist_max)``. When a later image exceeds ``hist_max`` the
histogram doubles its range as often as needed, merging neighbouring bins (exact, no re-binning error), so memory is
``tensors x 2048`` floats whatever the number of images. The statistics are checkpointed to an ``.npz`` cache
(``--cache-dir``) keyed by model hash, input size, tensor scope and the image list; an interrupted run resumes where
it stopped, and switching method re-uses the cache without running the model again.

Methods (symmetric int8, amax -> scale = amax / 127):

- ``minmax``: the largest ``|x|`` seen.
- ``percentile``: the ``p``-th percentile of ``|x|`` from the histogram (upper edge of the bin where it is reached).
- ``entropy``: TensorRT's entropy calibration (IInt8EntropyCalibrator2, as NVIDIA describes it in "8-bit Inference
  with TensorRT", GTC 2017): for every candidate threshold bin ``i`` in [128, 2048], the reference distribution P is
  bins ``[0, i)`` with all outliers folded into bin ``i-1``; Q quantizes bins ``[0, i)`` into 128 levels and expands
  them back over the non-empty bins; pick the ``i`` with the smallest KL(P || Q); amax = ``i * bin_width``.
- ``mse``: the amax (on the bin grid) that minimises the expected squared quantization error under the histogram.
- ``best``: per tensor, the method whose amax gives the lowest local reconstruction error (expected squared error of
  quantize-dequantize of that tensor, estimated from its histogram at full bin resolution).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from trtalign.core.enums import CalibrationMethod, values
from trtalign.core.errors import ConfigError, InputError, ModelError, choices_text
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.core.logging import get_logger, progress
from trtalign.core.ort import ort_session
from trtalign.export.ranges import MIN_AMAX, Ranges, TensorRange
from trtalign.export.units import calibration_tensors, export_like, load_model

log = get_logger(__name__)

METHODS = values(CalibrationMethod)  # the default is CalibrationMethod.default() (minmax)
NUM_BINS = 2048
MIN_IMAGES = 8
CACHE_VERSION = 1


# ------------------------------------------------------------------------------------------------- statistics
@dataclass
class TensorStats:
    """Streaming statistics of one tensor. ``hist[k]`` counts finite ``|x|`` in ``[k, k+1) * hist_max / bins``."""

    name: str
    hist: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=np.float64))
    hist_max: float = 0.0
    amax: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    count: int = 0
    nonfinite: int = 0

    @property
    def bin_width(self) -> float:
        return self.hist_max / len(self.hist) if self.hist_max > 0 else 0.0

    def update(self, values: np.ndarray) -> int:
        """Add finite values of ``values``; returns how many were non-finite (they are counted, not binned)."""
        x = np.asarray(values, dtype=np.float32).reshape(-1)
        finite = np.isfinite(x)
        bad = int(x.size - np.count_nonzero(finite))
        if bad:
            x = x[finite]
            self.nonfinite += bad
        if x.size == 0:
            return bad
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        a = np.abs(x)
        amax = float(a.max())
        self.amax = max(self.amax, amax)
        self.count += int(a.size)
        if amax > self.hist_max:
            self._grow(amax)
        if self.hist_max == 0.0:  # everything seen so far is exactly 0
            self.hist[0] += a.size
            return bad
        idx = np.minimum((a * (len(self.hist) / self.hist_max)).astype(np.int64), len(self.hist) - 1)
        self.hist += np.bincount(idx, minlength=len(self.hist))
        return bad

    def _grow(self, amax: float) -> None:
        n = len(self.hist)
        if self.hist_max == 0.0:
            self.hist_max = amax
            return
        k = 1
        while self.hist_max * k < amax:
            k *= 2
        if k >= n:
            total = self.hist.sum()
            self.hist = np.zeros(n, dtype=np.float64)
            self.hist[0] = total
        else:
            merged = self.hist.reshape(n // k, k).sum(axis=1)
            self.hist = np.concatenate([merged, np.zeros(n - merged.size)])
        self.hist_max *= k


# ----------------------------------------------------------------------------------------- amax from statistics
def _quant_mse(hist: np.ndarray, width: float, amaxes: np.ndarray) -> np.ndarray:
    """Expected squared error of symmetric int8 quantize-dequantize for each candidate amax (bin centres)."""
    centers = (np.arange(len(hist)) + 0.5) * width
    scale = np.maximum(amaxes, 1e-30)[:, None] / 127.0
    q = np.minimum(np.round(centers[None, :] / scale), 127.0) * scale
    return ((centers[None, :] - q) ** 2 * hist[None, :]).sum(axis=1) / max(hist.sum(), 1.0)


def amax_minmax(stats: TensorStats) -> float:
    return float(stats.amax)


def amax_percentile(stats: TensorStats, percentile: float = 99.99) -> float:
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    total = stats.hist.sum()
    if total == 0 or stats.hist_max == 0:
        return float(stats.amax)
    cdf = np.cumsum(stats.hist) / total
    idx = int(np.searchsorted(cdf, percentile / 100.0 - 1e-12))
    return float(min((idx + 1) * stats.bin_width, stats.amax))


def _smooth_rows(p: np.ndarray, mask: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Per row: move a little mass onto the empty bins inside ``mask`` so that KL stays finite."""
    zeros = mask & (p == 0)
    nonzero = mask & (p > 0)
    n_z = zeros.sum(axis=1, keepdims=True)
    n_nz = np.maximum(nonzero.sum(axis=1, keepdims=True), 1)
    out = np.where(zeros, eps, np.where(nonzero, p - eps * n_z / n_nz, 0.0))
    return np.where(mask, np.maximum(out, 1e-12), 0.0)


def _kl_rows(hist: np.ndarray, suffix: np.ndarray, cands: np.ndarray, levels: int) -> np.ndarray:
    """KL(P || Q) of TensorRT's entropy calibration for a block of candidate threshold bins ``cands``."""
    n = len(hist)
    j = np.arange(n)[None, :]
    i = cands[:, None]
    mask = j < i
    p = np.where(mask, hist[None, :], 0.0)
    rows = np.arange(len(cands))
    p[rows, cands - 1] += suffix[cands]
    nz = mask & (hist[None, :] != 0)
    level = np.where(mask, (j * levels) // i, 0)
    flat = (rows[:, None] * levels + level)
    level_sum = np.bincount(flat[mask], weights=np.broadcast_to(hist, p.shape)[mask],
                            minlength=len(cands) * levels).reshape(len(cands), levels)
    level_cnt = np.bincount(flat[nz], minlength=len(cands) * levels).reshape(len(cands), levels)
    q = np.where(nz, level_sum[rows[:, None], level] / np.maximum(level_cnt[rows[:, None], level], 1), 0.0)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-30)
    q = q / np.maximum(q.sum(axis=1, keepdims=True), 1e-30)
    p = _smooth_rows(p, mask)
    q = _smooth_rows(q, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(mask & (p > 0), p * np.log(p / np.where(q > 0, q, 1e-12)), 0.0)
    return terms.sum(axis=1)


def amax_entropy(stats: TensorStats, num_quantized_bins: int = 128, stride: int = 1, coarse: int = 16,
                 block: int = 64) -> float:
    """TensorRT's entropy threshold. ``coarse`` > 1 searches every ``coarse``-th bin first, then every bin within
    ``coarse`` of the best one (same answer whenever KL is unimodal at that scale; ``coarse=1`` is exhaustive)."""
    hist = stats.hist.astype(np.float64)
    n = len(hist)
    if hist.sum() == 0 or stats.hist_max == 0:
        return float(stats.amax)
    if hist[num_quantized_bins:].sum() == 0:  # everything fits under the first candidate: nothing to clip
        last = int(np.nonzero(hist)[0][-1]) + 1
        return float(min(last * stats.bin_width, stats.amax))
    suffix = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # suffix[i] = sum(hist[i:])

    def argmin_over(cands: np.ndarray) -> tuple[int, float]:
        kl = np.concatenate([_kl_rows(hist, suffix, cands[s:s + block], num_quantized_bins)
                             for s in range(0, len(cands), block)])
        k = int(np.argmin(kl))
        return int(cands[k]), float(kl[k])

    if stride == 1 and coarse > 1:  # coarse grid, then every bin around the coarse minimum
        best, _ = argmin_over(np.arange(num_quantized_bins, n + 1, coarse))
        best, _ = argmin_over(np.arange(max(num_quantized_bins, best - coarse), min(n, best + coarse) + 1))
    else:
        best, _ = argmin_over(np.arange(num_quantized_bins, n + 1, stride))
    return float(min(best * stats.bin_width, stats.amax))


def amax_mse(stats: TensorStats, stride: int = 4) -> float:
    if stats.hist.sum() == 0 or stats.hist_max == 0:
        return float(stats.amax)
    n = len(stats.hist)
    cand = np.arange(stride, n + 1, stride, dtype=np.float64) * stats.bin_width
    cand = np.unique(np.minimum(np.append(cand, stats.amax), stats.amax))
    err = _quant_mse(stats.hist, stats.bin_width, cand)
    return float(cand[int(np.argmin(err))])


def reconstruction_error(stats: TensorStats, amax: float) -> float:
    """Expected squared quantize-dequantize error of this tensor with ``amax`` (histogram estimate)."""
    if stats.hist_max == 0:
        return 0.0
    return float(_quant_mse(stats.hist, stats.bin_width, np.array([max(amax, 1e-30)]))[0])


def compute_amax(stats: TensorStats, method: str, percentile: float = 99.99) -> tuple[float, str]:
    """(amax, method used) for one tensor. ``best`` returns the winning method's name."""
    if method == "minmax":
        return amax_minmax(stats), method
    if method == "percentile":
        return amax_percentile(stats, percentile), method
    if method == "entropy":
        return amax_entropy(stats), method
    if method == "mse":
        return amax_mse(stats), method
    if method == "best":
        options = [(compute_amax(stats, m, percentile)[0], m) for m in ("minmax", "percentile", "entropy", "mse")]
        return min(options, key=lambda o: (reconstruction_error(stats, o[0]), o[1]))
    raise ConfigError(f"invalid calibration method {method!r}; valid choices: {choices_text(METHODS)}")


# ---------------------------------------------------------------------------------------------- collection
@dataclass
class CalibrationData:
    """Everything collected from one model over one image list."""

    tensors: dict[str, TensorStats]
    model_sha256: str
    model_file: str
    images: list[str]
    folder: str
    folder_sha256: str
    imgsz: tuple[int, int]

    def to_dict(self) -> dict:
        return {"model_sha256": self.model_sha256, "model_file": self.model_file, "images": len(self.images),
                "folder": self.folder, "folder_sha256": self.folder_sha256, "imgsz": list(self.imgsz),
                "tensors": {k: {"amax": v.amax, "min": v.min, "max": v.max, "count": v.count,
                                "nonfinite": v.nonfinite} for k, v in self.tensors.items()}}

    def ranges(self, method: str, percentile: float = 99.99) -> Ranges:
        if method not in METHODS:
            raise ConfigError(f"invalid calibration method {method!r}; valid choices: {choices_text(METHODS)}")
        out = {}
        for name, st in progress(self.tensors.items(), total=len(self.tensors), desc=f"ranges ({method})"):
            amax, used = compute_amax(st, method, percentile)
            out[name] = TensorRange(amax=max(amax, MIN_AMAX), method=used)  # a scale must be > 0
        return Ranges(tensors=out, method=method, model_sha256=self.model_sha256, model_file=self.model_file,
                      params={"percentile": percentile, "num_bins": NUM_BINS},
                      data={"folder": self.folder, "folder_sha256": self.folder_sha256, "images": len(self.images),
                            "imgsz": list(self.imgsz)})


def _model_imgsz(model, imgsz) -> tuple[int, int]:
    if imgsz:
        hw = (int(imgsz), int(imgsz)) if np.isscalar(imgsz) else tuple(int(v) for v in imgsz)
        return hw  # type: ignore[return-value]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
        return int(dims[2].dim_value), int(dims[3].dim_value)
    for prop in model.metadata_props:
        if prop.key == "trtalign":
            meta = json.loads(prop.value)
            if "imgsz" in meta:
                return tuple(int(v) for v in meta["imgsz"])  # type: ignore[return-value]
    raise InputError("the model input has a dynamic height/width and no trtalign metadata: pass --imgsz")


def _folder_hash(paths: Sequence[Path]) -> str:
    text = "\n".join(f"{p.name}:{p.stat().st_size}" for p in paths)
    return sha256_bytes(text.encode("utf-8"))


def _observation_model(model, names: list[str]) -> bytes:
    """The model cut down to what computes ``names``, with those tensors as its outputs (drops NMS and the rest)."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    graph.outputs = [tensors[n].to_variable(dtype=np.float32) if not isinstance(tensors[n], gs.Variable)
                     else tensors[n] for n in names]
    for t in graph.outputs:
        t.dtype = np.float32
    graph.cleanup(remove_unused_graph_inputs=False)

    return export_like(graph, model, metadata=False).SerializeToString()


def _cache_path(cache_dir, model_sha: str, imgsz, scope: str, folder_sha: str) -> Path:
    key = sha256_bytes(f"{CACHE_VERSION}:{model_sha}:{imgsz}:{scope}:{folder_sha}".encode())[:20]
    return Path(cache_dir) / f"calib-{key}.npz"


def _save_cache(path: Path, data: CalibrationData, done: int) -> None:
    names = list(data.tensors)
    st = [data.tensors[n] for n in names]
    buf = io.BytesIO()
    np.savez_compressed(
        buf, hist=np.stack([s.hist for s in st]), hist_max=np.array([s.hist_max for s in st]),
        amax=np.array([s.amax for s in st]), vmin=np.array([s.min for s in st]), vmax=np.array([s.max for s in st]),
        count=np.array([s.count for s in st], dtype=np.int64),
        nonfinite=np.array([s.nonfinite for s in st], dtype=np.int64),
        meta=np.array(json.dumps({"names": names, "done": done, "images": data.images[:done],
                                  "model_sha256": data.model_sha256})))
    atomic_write_bytes(path, buf.getvalue())


def _load_cache(path: Path, data: CalibrationData) -> int:
    """Fill ``data.tensors`` from the cache; returns how many images it covers (0 when unusable)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["names"] != list(data.tensors) or meta["images"] != data.images[:meta["done"]]:
                return 0
            for k, n in enumerate(meta["names"]):
                data.tensors[n] = TensorStats(name=n, hist=z["hist"][k].astype(np.float64),
                                              hist_max=float(z["hist_max"][k]), amax=float(z["amax"][k]),
                                              min=float(z["vmin"][k]), max=float(z["vmax"][k]),
                                              count=int(z["count"][k]), nonfinite=int(z["nonfinite"][k]))
            return int(meta["done"])
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable calibration cache %s: %s", path, exc)
        return 0


def collect_statistics(model_path: str | os.PathLike, images: str | os.PathLike, num: int = 512,
                       imgsz: int | Sequence[int] | None = None, cache_dir: str | os.PathLike | None = None,
                       scope: str = "qdq", min_images: int = MIN_IMAGES, on_nonfinite: str = "error",
                       checkpoint_every: int = 32, threads: int = 1) -> CalibrationData:
    """Run the FP32 model over up to ``num`` images of ``images`` and collect per-tensor statistics.

    Fewer readable images than ``num`` warns and continues; fewer than ``min_images`` raises InputError.
    ``on_nonfinite``: ``error`` (ModelError naming tensor and image) or ``skip`` (exclude NaN/inf with a warning).
    """

    from trtalign.core.preprocess import letterbox, list_images, read_image

    if on_nonfinite not in ("error", "skip"):
        raise ConfigError(f"invalid on_nonfinite {on_nonfinite!r}; valid choices: 'error', 'skip'")
    if num < 1:
        raise InputError(f"--num must be >= 1, got {num}")
    model_path = Path(model_path)
    model = load_model(model_path)
    model_bytes = model_path.read_bytes()
    model_sha = sha256_bytes(model_bytes)
    hw = _model_imgsz(model, imgsz)
    paths = list_images(images)
    readable: list[Path] = []
    for p in paths:  # decide the image list up front so the cache key and resume are stable
        if len(readable) >= num:
            break
        try:
            read_image(p)
            readable.append(p)
        except InputError as exc:
            log.warning("skipping unreadable calibration image: %s", exc)
    if len(readable) < min_images:
        raise InputError(f"calibration needs at least {min_images} readable images, found {len(readable)} in "
                         f"{images} (asked for {num})")
    if len(readable) < num:
        log.warning("asked for %d calibration images, %s has only %d readable: continuing with %d", num, images,
                    len(readable), len(readable))
    names = calibration_tensors(model, scope)
    data = CalibrationData(tensors={n: TensorStats(name=n) for n in names}, model_sha256=model_sha,
                           model_file=model_path.name, images=[p.name for p in readable], folder=str(images),
                           folder_sha256=_folder_hash(readable), imgsz=hw)
    # keyed on the whole folder listing, so a run with a larger --num resumes from a smaller one's cache
    cache = _cache_path(cache_dir, model_sha, hw, scope, _folder_hash(paths)) if cache_dir else None
    done = _load_cache(cache, data) if cache and cache.is_file() else 0
    if done:
        log.info("resuming calibration from %s: %d of %d images already collected", cache, done, len(readable))
    if done >= len(readable):
        return data
    sess = ort_session(_observation_model(model, names), threads=threads)
    input_name = sess.get_inputs()[0].name
    warned: set[str] = set()
    for k in progress(range(done, len(readable)), total=len(readable) - done, desc="calibrating", unit="img"):
        tensor, _ = letterbox(read_image(readable[k]), hw)
        outs = sess.run(names, {input_name: tensor})
        for n, v in zip(names, outs):
            bad = data.tensors[n].update(v)
            if bad and on_nonfinite == "error":
                raise ModelError(f"tensor {n!r} has {bad} non-finite value(s) (NaN/inf) on image {readable[k].name}; "
                                 f"the FP32 model is broken for this input (or use on_nonfinite='skip')")
            if bad and n not in warned:
                warned.add(n)
                log.warning("tensor %r has NaN/inf values (first on %s): excluded from its statistics", n,
                            readable[k].name)
        if cache and (k + 1) % checkpoint_every == 0:
            _save_cache(cache, data, k + 1)
    if cache:
        _save_cache(cache, data, len(readable))
    empty = [n for n, s in data.tensors.items() if s.count == 0]
    if empty:
        raise ModelError(f"{len(empty)} tensor(s) had no finite values on any calibration image: "
                         f"{', '.join(empty[:8])}")
    return data


def calibrate(model_path: str | os.PathLike, images: str | os.PathLike,
              method: str = CalibrationMethod.default().value, num: int = 512, percentile: float = 99.99,
              **kwargs) -> Ranges:
    """Collect activation statistics of the FP32 ONNX over ``images`` (or load them from the cache) and compute the
    ranges with ``method``.

    Args:
        model_path: the FP32 ONNX (NMS is cut off for the observation model).
        images: folder of calibration images (letterboxed like inference).
        method: a :class:`trtalign.core.enums.CalibrationMethod` value; default minmax.
        num: images used at most (at least ``MIN_IMAGES`` readable ones are needed). percentile: for ``percentile``.
        **kwargs: passed to :func:`collect_statistics` (``imgsz``, ``cache_dir``, ``scope``, ``on_nonfinite``).

    Returns:
        :class:`trtalign.export.ranges.Ranges` (amax per tensor; int8 scale = amax / 127).

    Raises:
        ConfigError (unknown method), InputError (too few readable images), ModelError (non-finite activations).

    Example::

        ranges = calibrate("model.onnx", "calib/", num=256)
        save_ranges(ranges, "ranges.json")
    """
    if method not in METHODS:
        raise ConfigError(f"invalid calibration method {method!r}; valid choices: {choices_text(METHODS)}")
    return collect_statistics(model_path, images, num=num, **kwargs).ranges(method, percentile)


def weight_amax_per_channel(weight: np.ndarray, axis: int) -> np.ndarray:
    """Max-abs of a weight over every axis but ``axis`` (the per-channel int8 range of weights)."""
    w = np.abs(np.asarray(weight, dtype=np.float32))
    other = tuple(a for a in range(w.ndim) if a != axis)
    return w.max(axis=other) if other else w


# ------------------------------------------------------------------------------------ class-score collapse guard
#: score SQNR (dB, Q/DQ model vs FP32, class-score rows of ``output0``) below which calibrated ranges are refused
SCORE_SQNR_THRESHOLD_DB = 10.0


@dataclass
class ScoreGuard:
    """Whether the calibrated ranges keep the class scores: their SQNR after Q/DQ against FP32, and when it is below
    ``threshold_db`` the tensors whose ranges did it (restoring those to their observed max brings the scores back
    to ``repaired_sqnr_db``). Truthy when the scores are kept."""

    score_sqnr_db: float
    box_sqnr_db: float
    threshold_db: float
    images: int
    culprits: list = field(default_factory=list)  # [{"tensor", "amax", "observed_max", "local_sqnr_db"}]
    repaired_sqnr_db: float | None = None

    def __bool__(self) -> bool:
        return self.score_sqnr_db >= self.threshold_db

    def message(self) -> str:
        if self:
            return (f"class scores kept: score SQNR {self.score_sqnr_db:.1f} dB >= {self.threshold_db:.1f} dB on "
                    f"{self.images} calibration images")
        names = ", ".join(f"{c['tensor']} (amax {c['amax']:.4g} vs observed max {c['observed_max']:.4g})"
                          for c in self.culprits[:8]) or "none found"
        if len(self.culprits) > 8:
            names += f" and {len(self.culprits) - 8} more"
        if self.culprits:
            fix = f"; with those at their observed max the score SQNR is {self.repaired_sqnr_db:.1f} dB"
        else:
            fix = ("" if self.repaired_sqnr_db is None else
                   f"; even with every clipped range at its observed max it is {self.repaired_sqnr_db:.1f} dB")
            fix += (" (no clipped range explains it: a tensor whose range is set by an outlier channel loses the "
                    "rest to rounding; keep the units in front of the scores in FP16)")
        return (f"the calibrated ranges collapse the class scores: score SQNR {self.score_sqnr_db:.1f} dB < "
                f"{self.threshold_db:.1f} dB vs FP32 on {self.images} calibration images (box SQNR "
                f"{self.box_sqnr_db:.1f} dB); ranges that did it: {names}{fix}. Use minmax ranges for them")

    def to_dict(self) -> dict:
        return {"ok": bool(self), "score_sqnr_db": self.score_sqnr_db, "box_sqnr_db": self.box_sqnr_db,
                "threshold_db": self.threshold_db, "images": self.images, "culprits": list(self.culprits),
                "repaired_sqnr_db": self.repaired_sqnr_db, "message": self.message()}


def _sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    sig = float((ref.astype(np.float64) ** 2).sum())
    noise = float(((out.astype(np.float64) - ref) ** 2).sum())
    if noise == 0:
        return math.inf
    return -math.inf if sig == 0 else 10.0 * math.log10(sig / noise)


def _fake_quant(x: np.ndarray, amax: float) -> np.ndarray:
    scale = max(float(amax), 1e-30) / 127.0
    return np.clip(np.round(x / scale), -128, 127) * scale


def score_guard(model_path, ranges: Ranges, inputs: Sequence[np.ndarray], num_classes: int | None = None,
                threshold_db: float = SCORE_SQNR_THRESHOLD_DB, max_culprits: int = 8,
                threads: int = 1) -> ScoreGuard:
    """Check that ``ranges`` do not collapse the class scores, on a few preprocessed ``[1, 3, H, W]`` ``inputs``.

    Runs the FP32 model and its Q/DQ model (every unit INT8, :func:`trtalign.export.qdq.insert_qdq`) up to the raw
    head ``output0`` ``[B, 4 + C (+1), N]`` and takes the SQNR of the class-score rows alone (pixel boxes would drown
    them). Below ``threshold_db`` it names the ranges that did it: the calibrated tensors whose amax clips what FP32
    produced, ranked by their own SQNR under their amax (lowest first); if setting all of them to their observed max
    brings the scores back, the shortest prefix of that ranking that does (bisection, O(log n) Q/DQ runs) is named.
    ``max_culprits`` is kept for callers; the message lists the first 8.

    Returns:
        :class:`ScoreGuard` (truthy when the scores are kept).
    Raises:
        InputError: no inputs, or a model without ``output0``.
    """
    from trtalign.export.metadata import read_metadata
    from trtalign.export.qdq import insert_qdq

    if not inputs:
        raise InputError("the score guard needs at least one calibration image")
    model = load_model(model_path)
    if num_classes is None:
        names = (read_metadata(model) or {}).get("names")
        if not names:
            raise InputError("the score guard needs num_classes (the model has no trtalign metadata)")
        num_classes = len(names)
    tensors = [t for t in ranges.tensors if t != "output0"]

    def run(proto, names: list[str]) -> list[list[np.ndarray]]:
        sess = ort_session(_observation_model(proto, names), threads=threads)
        feed = sess.get_inputs()[0].name
        return [sess.run(names, {feed: x}) for x in inputs]

    try:
        fp32 = run(model, ["output0", *tensors])
    except KeyError as exc:
        raise InputError(f"the score guard needs the raw head tensor output0 and the calibrated tensors: {exc}") \
            from None
    ref = np.concatenate([o[0] for o in fp32])
    rows = slice(4, 4 + num_classes)

    def sqnrs(r: Ranges) -> tuple[float, float]:
        out = np.concatenate([o[0] for o in run(insert_qdq(model, r)[0], ["output0"])])
        return _sqnr_db(ref[:, rows], out[:, rows]), _sqnr_db(ref[:, :4], out[:, :4])

    score_db, box_db = sqnrs(ranges)
    guard = ScoreGuard(score_db, box_db, threshold_db, len(inputs))
    if guard:
        return guard
    cands = []
    for k, t in enumerate(tensors):
        x = np.concatenate([o[k + 1].ravel() for o in fp32])
        observed = float(np.abs(x).max()) if x.size else 0.0
        amax = ranges.amax(t)
        if observed > amax:  # only a range that clips what FP32 produces can silence a tensor
            cands.append({"tensor": t, "amax": amax, "observed_max": observed,
                          "local_sqnr_db": _sqnr_db(x, _fake_quant(x, amax))})
    cands.sort(key=lambda c: (c["local_sqnr_db"], c["tensor"]))
    if not cands:
        return guard

    def restored(chosen: list) -> float:
        fixed = Ranges(tensors={**ranges.tensors, **{c["tensor"]: TensorRange(amax=c["observed_max"], method="minmax")
                                                   for c in chosen}},
                       method=ranges.method, model_sha256=ranges.model_sha256, model_file=ranges.model_file,
                       params=ranges.params, data=ranges.data)
        return sqnrs(fixed)[0]

    # does clipping explain it at all? then the shortest prefix of the ranking that brings the scores back
    best = restored(cands)
    if best < threshold_db:
        guard.repaired_sqnr_db = best
    else:
        lo, hi, at_hi = 0, len(cands), best  # restoring cands[:hi] passes, cands[:lo] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            value = restored(cands[:mid])
            if value >= threshold_db:
                hi, at_hi = mid, value
            else:
                lo = mid
        guard.culprits, guard.repaired_sqnr_db = cands[:hi], at_hi
    log.warning(guard.message())
    return guard
