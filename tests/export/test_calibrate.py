"""Calibration: streaming histograms, the four amax methods (+ best), the resumable cache, and bad input."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from quant_models import small_graph, write_images, yolo_onnx

from trtalign.core.errors import ConfigError, InputError, ModelError
from trtalign.export import calibrate as cal
from trtalign.export.calibrate import (NUM_BINS, TensorStats, amax_entropy, amax_mse, amax_percentile,
                                       collect_statistics, compute_amax, reconstruction_error,
                                       weight_amax_per_channel)
from trtalign.export.units import calibration_tensors


def _stats(values) -> TensorStats:
    st = TensorStats("t")
    for chunk in np.array_split(np.asarray(values, dtype=np.float32), 7):
        st.update(chunk)
    return st


def test_histogram_growth_is_exact():
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, s, 5000).astype(np.float32) for s in (0.1, 1.0, 30.0, 0.5)]
    st = TensorStats("t")
    for b in batches:
        st.update(b)
    allv = np.abs(np.concatenate(batches))
    assert st.amax == pytest.approx(allv.max()) and st.count == allv.size
    direct = np.minimum((allv * (NUM_BINS / st.hist_max)).astype(np.int64), NUM_BINS - 1)
    direct_hist = np.bincount(direct, minlength=NUM_BINS)
    # merged bins equal a histogram taken at the final range (up to float rounding at bin edges)
    assert np.abs(st.hist - direct_hist).sum() <= 0.001 * allv.size
    assert st.hist_max >= allv.max() and st.hist.sum() == allv.size


def _entropy_loop(st: TensorStats, levels: int = 128) -> float:
    """TensorRT's entropy calibration written literally, loop by loop, to check the vectorised version."""
    hist = st.hist.astype(np.float64)
    best, best_kl = None, math.inf
    for i in range(levels, len(hist) + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        nz = hist[:i] != 0
        q = np.zeros(i)
        for lv in range(levels):
            lo, hi = (lv * i + levels - 1) // levels, ((lv + 1) * i + levels - 1) // levels
            idx = np.arange(lo, hi)
            n = nz[idx].sum()
            if n:
                q[idx[nz[idx]]] = hist[idx].sum() / n
        p, q = cal._smooth_rows((p / p.sum())[None], np.ones((1, i), bool))[0], \
            cal._smooth_rows((q / q.sum())[None], np.ones((1, i), bool))[0]
        kl = float(np.sum(p * np.log(p / q)))
        if kl < best_kl:
            best, best_kl = i, kl
    return min(best * st.bin_width, st.amax)


def test_entropy_matches_the_literal_algorithm():
    rng = np.random.default_rng(3)
    st = TensorStats("t", hist=np.zeros(512))  # fewer bins keep the literal loop fast; same algorithm
    st.update(np.concatenate([rng.normal(0, 1, 40000), rng.laplace(0, 4, 400)]))
    assert amax_entropy(st, coarse=1) == pytest.approx(_entropy_loop(st), rel=1e-9)
    full = _stats(np.concatenate([rng.normal(0, 1, 40000), rng.laplace(0, 2, 400)]))  # 2048 bins
    assert amax_entropy(full) == pytest.approx(amax_entropy(full, coarse=1), rel=0.05)  # coarse-to-fine search


@pytest.mark.parametrize("name, values", [
    ("gaussian with outliers", np.concatenate([np.random.default_rng(0).normal(0, 1, 50000), [40.0, -55.0]])),
    ("relu-like", np.maximum(np.random.default_rng(1).normal(0, 2, 50000), 0)),
    ("uniform", np.random.default_rng(2).uniform(-3, 3, 50000)),
])
def test_methods_on_known_distributions(name, values):
    st = _stats(values)
    absv = np.abs(values)
    assert compute_amax(st, "minmax")[0] == pytest.approx(absv.max(), rel=1e-6)
    p = amax_percentile(st, 99.9)
    assert abs(p - np.percentile(absv, 99.9)) <= 2 * st.bin_width
    for method in ("entropy", "mse", "percentile"):
        amax = compute_amax(st, method)[0]
        assert 0 < amax <= absv.max() + 1e-6, method
    mse = amax_mse(st)
    assert reconstruction_error(st, mse) <= reconstruction_error(st, absv.max()) + 1e-12
    amax, used = compute_amax(st, "best")
    errors = {m: reconstruction_error(st, compute_amax(st, m)[0]) for m in ("minmax", "percentile", "entropy", "mse")}
    assert used in errors and reconstruction_error(st, amax) == pytest.approx(min(errors.values()))
    if name.startswith("gaussian"):  # entropy ignores the two outliers; mse clips them only partly (they cost more
        assert amax_entropy(st) < 10  # squared error clipped than the rounding error they cause)
        assert mse < absv.max()


def test_degenerate_tensors_and_bad_method():
    st = _stats(np.zeros(100))
    for m in ("minmax", "percentile", "entropy", "mse", "best"):
        assert compute_amax(st, m)[0] == 0.0
    with pytest.raises(ConfigError, match="valid choices"):
        compute_amax(st, "kl")
    with pytest.raises(ConfigError, match="percentile"):
        amax_percentile(_stats([1.0, 2.0]), 0.0)
    st = TensorStats("t")
    assert st.update(np.array([1.0, np.nan, np.inf, -2.0])) == 2 and st.amax == 2.0 and st.nonfinite == 2


def test_weight_amax_per_channel():
    w = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 12
    assert weight_amax_per_channel(w, 0).tolist() == [12.0, 11.0]
    assert weight_amax_per_channel(w, 1).tolist() == [12.0, 8.0, 11.0]


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    return yolo_onnx(tmp_path_factory.mktemp("calib_models"))


def test_collect_covers_every_qdq_site_and_cache_reuses(yolo, tmp_path, monkeypatch):
    images = write_images(tmp_path / "imgs", 8)
    data = collect_statistics(yolo, images, num=8, cache_dir=tmp_path / "cache")
    assert set(data.tensors) == set(calibration_tensors(yolo)) and len(data.images) == 8
    assert data.tensors["images"].amax <= 1.0 and all(s.count > 0 for s in data.tensors.values())
    r = data.ranges("percentile")
    assert r.model_sha256 == data.model_sha256 and r.data["images"] == 8 and r.data["folder_sha256"]

    import onnxruntime

    def no_inference(*a, **k):
        raise AssertionError("the cache should have made inference unnecessary")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_inference)
    again = collect_statistics(yolo, images, num=8, cache_dir=tmp_path / "cache")
    for name, st in data.tensors.items():
        assert np.array_equal(st.hist, again.tensors[name].hist) and st.amax == again.tensors[name].amax
    assert again.ranges("minmax").tensors["images"].amax == data.tensors["images"].amax


def test_resume_from_a_partial_cache(tmp_path):
    model = small_graph(tmp_path / "small.onnx")
    images = write_images(tmp_path / "imgs", 12)
    full = collect_statistics(model, images, num=12)
    collect_statistics(model, images, num=9, cache_dir=tmp_path / "cache", checkpoint_every=3)
    calls = []
    real = cal.TensorStats.update

    def counting(self, values):
        calls.append(self.name)
        return real(self, values)

    cal.TensorStats.update = counting
    try:  # asking for 12 now resumes after the 9 cached images
        resumed = collect_statistics(model, images, num=12, cache_dir=tmp_path / "cache")
    finally:
        cal.TensorStats.update = real
    assert len(calls) == 3 * len(full.tensors)
    for name, st in full.tensors.items():
        assert np.allclose(st.hist, resumed.tensors[name].hist) and st.amax == resumed.tensors[name].amax


def test_bad_image_folders(tmp_path, caplog):
    model = small_graph(tmp_path / "small.onnx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        collect_statistics(model, tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(9):
        (broken / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="at least 8 readable images, found 0"):
        collect_statistics(model, broken)
    few = write_images(tmp_path / "few", 5)
    with pytest.raises(InputError, match="at least 8"):
        collect_statistics(model, few)
    some = write_images(tmp_path / "some", 9)
    (some / "zz_broken.jpg").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="trtalign"):
        data = collect_statistics(model, some, num=512)
    assert len(data.images) == 9
    text = caplog.text
    assert "asked for 512" in text and "zz_broken.jpg" in text
    with pytest.raises(InputError, match="not found"):
        collect_statistics(model, tmp_path / "nope")


def test_nonfinite_activations(tmp_path, caplog):
    model = small_graph(tmp_path / "nan.onnx", nan=True)  # Sqrt(x - 0.5): NaN wherever a pixel < 0.5
    images = write_images(tmp_path / "imgs", 8)
    with pytest.raises(ModelError, match="non-finite"):
        collect_statistics(model, images)
    with caplog.at_level(logging.WARNING, logger="trtalign"):
        data = collect_statistics(model, images, on_nonfinite="skip")
    st = data.tensors["xq"]
    assert st.nonfinite > 0 and np.isfinite(st.amax) and "NaN/inf" in caplog.text
    assert math.isfinite(data.ranges("entropy").tensors["xq"].amax)


def test_calibrate_cli(tmp_path, cli):
    model = small_graph(tmp_path / "small.onnx")
    images = write_images(tmp_path / "imgs", 8)
    out, cache = tmp_path / "ranges.json", tmp_path / "calib.cache"
    code, stdout, stderr = cli("calibrate", str(model), "--images", str(images), "--method", "best", "--out",
                               str(out), "--trt-cache", str(cache), "--trt-version", "10.3.0",
                               "--json", str(tmp_path / "r.json"))
    assert code == 0, stderr
    assert out.is_file() and cache.read_text().startswith("TRT-100300-EntropyCalibration2\n")
    assert "ranges" in stdout
    code, _, stderr = cli("calibrate", str(model), "--images", str(tmp_path / "missing"), "--out",
                          str(tmp_path / "x.json"))
    assert code == 2 and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not (tmp_path / "x.json").exists()


def test_score_guard_catches_ranges_that_zero_the_class_scores(tmp_path):
    """Two-branch detector (tests/tune/sensitive_model.py, without its outlier channels): minmax ranges keep the
    scores; shrinking the range of the tensor that feeds the class-score branch zeroes it, and the guard says so and
    names that tensor. With the outlier channels even minmax ranges lose the scores, and the guard says that too."""
    from tests.tune.sensitive_model import make_two_branch_setup
    from trtalign.core.preprocess import letterbox, list_images, read_image
    from trtalign.export.ranges import Ranges, TensorRange

    s = make_two_branch_setup(tmp_path, outliers=False)
    ranges = cal.calibrate(s["onnx"], s["data"] / "images" / "train", method="minmax", num=16)
    inputs = [letterbox(read_image(p), 32)[0] for p in list_images(s["data"] / "images" / "val")[:4]]
    ok = cal.score_guard(s["onnx"], ranges, inputs)
    assert ok and ok.score_sqnr_db >= cal.SCORE_SQNR_THRESHOLD_DB and ok.culprits == []
    assert "cls_r0" in ranges.tensors  # the input of model.cls_mid, the class-score branch
    bad = Ranges(tensors={**ranges.tensors, "cls_r0": TensorRange(amax=1e-6, method="minmax")}, method="minmax",
                 model_sha256=ranges.model_sha256, model_file=ranges.model_file)
    guard = cal.score_guard(s["onnx"], bad, inputs)
    assert not guard and guard.score_sqnr_db < ok.score_sqnr_db - 20  # the scores are gone ...
    assert guard.box_sqnr_db > 20.0  # ... while the boxes, which whole-tensor SQNR would weigh, are fine
    assert [c["tensor"] for c in guard.culprits] == ["cls_r0"] and guard.repaired_sqnr_db >= ok.score_sqnr_db - 0.5
    assert "cls_r0" in guard.message() and guard.to_dict()["ok"] is False
    # an independent check of the figure: the class-score rows of the Q/DQ model through ONNX Runtime directly
    import onnxruntime as ort

    from trtalign.export.qdq import insert_qdq

    def rows(proto):
        sess = ort.InferenceSession(cal._observation_model(proto, ["output0"]), providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(["output0"], {"images": x})[0][:, 4:6] for x in inputs]).astype(np.float64)

    ref, out = rows(cal.load_model(s["onnx"])), rows(insert_qdq(s["onnx"], bad)[0])
    assert guard.score_sqnr_db == pytest.approx(10 * math.log10((ref ** 2).sum() / ((out - ref) ** 2).sum()))

    # the model with an outlier channel in front of the score branch: per-tensor ranges cannot keep its scores
    w = make_two_branch_setup(tmp_path / "outliers")
    wr = cal.calibrate(w["onnx"], w["data"] / "images" / "train", method="minmax", num=16)
    wi = [letterbox(read_image(p), 32)[0] for p in list_images(w["data"] / "images" / "val")[:4]]
    worse = cal.score_guard(w["onnx"], wr, wi)
    assert not worse and "collapse the class scores" in worse.message()
