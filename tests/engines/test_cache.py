"""Engine cache keys, atomic entries, sidecar checks; calibration data and caches."""

from __future__ import annotations

import numpy as np
import pytest

from trtalign.core.errors import EngineError, InputError
from trtalign.engines.cache import EngineCache, EngineSidecar, cache_key, check_engine_compatible, read_sidecar, \
    sidecar_path, write_engine
from trtalign.engines.calibrator import CalibrationBatches, read_cache


def test_key_depends_on_content_not_names():
    k = cache_key(b"onnx", '{"route":"fp16"}', "10.3.0", "8.6")
    assert k == cache_key(b"onnx", '{"route":"fp16"}', "10.3", "8.6")  # same version spelled differently
    variants = [cache_key(b"onnx2", '{"route":"fp16"}', "10.3.0", "8.6"),  # ONNX bytes
                cache_key(b"onnx", '{"route":"fp32"}', "10.3.0", "8.6"),  # plan
                cache_key(b"onnx", '{"route":"fp16"}', "10.4.0", "8.6"),  # TensorRT version
                cache_key(b"onnx", '{"route":"fp16"}', "10.3.0", "8.7")]  # GPU architecture
    assert len({k, *variants}) == 5
    # a rebuilt plugin library changes the key too (its code is serialized into the engine)
    import tempfile
    from pathlib import Path

    lib = Path(tempfile.mkdtemp()) / "libtrtalign_plugins.so"
    lib.write_bytes(b"v1")
    with_lib = cache_key(b"onnx", '{"route":"fp16"}', "10.3.0", "8.6", [lib])
    lib.write_bytes(b"v2")
    assert len({k, with_lib, cache_key(b"onnx", '{"route":"fp16"}', "10.3.0", "8.6", [lib])}) == 3
    # field boundaries are length-prefixed: moving bytes between fields changes the key
    assert cache_key(b"ab", "c", "10.3", "8.6") != cache_key(b"a", "bc", "10.3", "8.6")


def test_cache_put_get_and_sidecar(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = cache_key(b"x", "{}", "10.3.0", "8.6")
    assert cache.get(key) is None
    path = cache.put(key, b"ENGINE", trt_version="10.3.0", gpu_name="RTX 3090", compute_capability="8.6",
                     onnx_sha256="abc", plan={"route": "fp16"}, build_seconds=12.3456,
                     rebuild_command="trtalign build cfg.yaml --precision fp16")
    assert cache.get(key) == path and path.read_bytes() == b"ENGINE"
    sc = read_sidecar(path)
    assert (sc.trt_version, sc.gpu_name, sc.compute_capability, sc.onnx_sha256, sc.build_seconds, sc.cache_key) == \
        ("10.3.0", "RTX 3090", "8.6", "abc", 12.346, key)
    assert [e.cache_key for e in cache.entries()] == [key]
    assert not [p for p in (tmp_path / "engines").iterdir() if p.name.endswith(".tmp")]  # no temp files left
    sidecar_path(path).unlink()  # an entry without its sidecar is incomplete
    assert cache.get(key) is None


@pytest.mark.parametrize("trt,cc,problem", [
    ("10.4.0", "8.6", "TensorRT 10.3.0 \\(this machine has 10.4.0\\)"),
    ("10.3.0", "8.7", "compute capability 8.6 \\(RTX 3090\\); this GPU is 8.7"),
    ("8.6.1", "9.0", "TensorRT 10.3.0 .* and for a GPU of compute capability 8.6"),
])
def test_engine_from_another_version_or_gpu_is_refused_with_rebuild_command(tmp_path, trt, cc, problem):
    path = write_engine(tmp_path / "m.engine", b"E", EngineSidecar("10.3.0", "RTX 3090", "8.6", "abc", {}, 1.0,
                                                                   rebuild_command="trtalign build cfg.yaml"))
    with pytest.raises(EngineError, match=problem) as exc:
        check_engine_compatible(path, trt, cc)
    assert "rebuild it here with `trtalign build cfg.yaml`" in str(exc.value)
    check_engine_compatible(path, "10.3.0.30", "8.6")  # same version (build number differs) and GPU: fine
    check_engine_compatible(path, "10.3.0", None)  # GPU unknown: version still checked, passes


def test_missing_or_bad_sidecar(tmp_path, caplog):
    (tmp_path / "m.engine").write_bytes(b"E")
    check_engine_compatible(tmp_path / "m.engine", "10.3", "8.6")  # trtexec engine: warn only
    assert "no trtalign sidecar" in caplog.text
    (tmp_path / "m.json").write_text("{oops")
    with pytest.raises(InputError, match="not valid JSON"):
        read_sidecar(tmp_path / "m.engine")
    (tmp_path / "m.json").write_text('{"format": "other"}')
    with pytest.raises(InputError, match="not a trtalign engine sidecar"):
        read_sidecar(tmp_path / "m.engine")


def test_runner_refuses_engine_from_another_version(tmp_path):
    from trtalign.runtime.trt_runner import TrtRunner

    from .trt_standin import FakeCudaBackend, Standin

    path = write_engine(tmp_path / "m.engine", b"E", EngineSidecar("8.6.1", "Orin", "8.7", "abc", {}, 1.0))
    runner = TrtRunner(path, trt=Standin("10.3.0"), backend=FakeCudaBackend("8.7"))
    with pytest.raises(EngineError, match="built with TensorRT 8.6.1 \\(this machine has 10.3.0\\)"):
        runner.activate()
    with pytest.raises(InputError, match="engine file not found"):
        TrtRunner(tmp_path / "none.engine", trt=Standin("10.3.0"), backend=FakeCudaBackend()).activate()


def test_calibration_batches_pad_last_batch(tmp_path):
    arrays = [np.full((3, 8, 8), i, np.float32) for i in range(5)]
    batches = list(CalibrationBatches(arrays, batch_size=2))
    assert [b.shape for b in batches] == [(2, 3, 8, 8)] * 3
    assert batches[-1][:, 0, 0, 0].tolist() == [4.0, 4.0] and batches[0].flags["C_CONTIGUOUS"]
    with pytest.raises(InputError, match="calibration needs images"):
        CalibrationBatches()


def test_calibration_batches_from_images_letterboxed(tmp_path):
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 40, 3), 50 * i, np.uint8))
    batches = list(CalibrationBatches(images=tmp_path, imgsz=32, batch_size=2, num=3))
    assert batches[0].shape == (2, 3, 32, 32) and batches[0].dtype == np.float32
    assert abs(batches[0][1, 0, 0, 0] - 114 / 255) < 1e-6  # letterbox padding row, like inference
    assert abs(batches[0][1, 0, 16, 16] - 50 / 255) < 1e-6


def test_calibration_cache_written_by_export_is_read_back(tmp_path):
    """One cache format, one parser (export.calib_cache) for trtalign calibrate and the engine calibrator."""
    from trtalign.export.calib_cache import parse_calibration_cache, trt_version_code, write_calibration_cache

    path = tmp_path / "calib.cache"
    write_calibration_cache({"images": 1.0, "/model.0/conv/Conv_output_0": 12.7}, path, "8.6.1")
    cache = parse_calibration_cache(path.read_text())
    assert (cache.algorithm, cache.version_code, len(cache.scales)) == ("EntropyCalibration2", 8601, 2)
    assert cache.scales["/model.0/conv/Conv_output_0"] == pytest.approx(0.1)
    assert read_cache(path, "8.6.1", "entropy2") == path.read_bytes()
    assert read_cache(path, "10.3.0", "entropy2") is None  # another version's cache is ignored (TensorRT would too)
    assert read_cache(path, "8.6.1", "minmax") is None
    assert (trt_version_code("8.6.1"), trt_version_code("10.3.0")) == (8601, 100300)
    path.write_text("hello\nworld")
    with pytest.raises(InputError, match="not a TensorRT cache header"):
        read_cache(path, "8.6.1", "entropy2")
