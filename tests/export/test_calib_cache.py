"""TensorRT calibration caches: header per version, float32 hex scales, round trip, names from the graph."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import pytest
from quant_models import small_graph, write_images

from trtalign.core.errors import ConfigError, InputError, UnsupportedError
from trtalign.export.calib_cache import (calibration_cache_text, parse_calibration_cache, read_calibration_cache,
                                         trt_version_code, write_calibration_cache)
from trtalign.export.calibrate import collect_statistics


@pytest.mark.parametrize("version, code", [
    ("8.5.2", 8502),  # JetPack 5.1
    ("8.6.1", 8601),
    ("8.6", 8600),  # patch omitted -> 0
    ("10.3.0", 100300),  # JetPack 6.1/6.2
    ("10.13.2", 101302),
])
def test_version_codes(version, code):
    assert trt_version_code(version) == code


@pytest.mark.parametrize("version, error", [("11.4.0", UnsupportedError), ("7.2.3", UnsupportedError),
                                            ("eight", ConfigError), ("8.100.0", ConfigError)])
def test_bad_versions(version, error):
    with pytest.raises(error):
        trt_version_code(version)


def test_text_format_and_round_trip(tmp_path):
    amax = {"images": 1.0, "/model.0/act/Mul_output_0": 12.7, "odd:name": 0.001}
    text = calibration_cache_text(amax, "8.6.1")
    lines = text.splitlines()
    assert lines[0] == "TRT-8601-EntropyCalibration2"
    assert lines[1] == "images: " + struct.pack(">f", np.float32(1.0 / 127)).hex()
    path = write_calibration_cache(amax, tmp_path / "c.cache", "10.3.0", "MinMaxCalibration")
    cache = read_calibration_cache(path)
    assert (cache.version_code, cache.algorithm) == (100300, "MinMaxCalibration")
    assert list(cache.scales) == list(amax)  # names (with ':') and order preserved
    for name, value in amax.items():
        assert cache.scales[name] == float(np.float32(value / 127))  # exact float32
        assert cache.amax()[name] == pytest.approx(value, rel=1e-6)
    with pytest.raises(ConfigError, match="valid choices"):
        calibration_cache_text(amax, "8.6.1", "Percentile")


def test_reads_tensorrt_style_short_hex():
    cache = parse_calibration_cache("TRT-8601-EntropyCalibration2\nimages: 3c010a14\nzero: 0\n")
    assert cache.scales["images"] == pytest.approx(0.00787, rel=1e-3) and cache.scales["zero"] == 0.0


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("hello\nworld", "not a TensorRT cache header"),
    ("TRT-8601-EntropyCalibration2\nimages 3c010a14", "line 2"),
    ("TRT-8601-EntropyCalibration2\nimages: xyz", "line 2"),
])
def test_bad_caches(text, match):
    with pytest.raises(InputError, match=match):
        parse_calibration_cache(text)


def test_cache_names_are_graph_tensor_names(tmp_path):
    model = small_graph(tmp_path / "small.onnx")
    data = collect_statistics(model, write_images(tmp_path / "imgs", 8), num=8, scope="all")
    path = write_calibration_cache(data.ranges("entropy"), tmp_path / "c.cache", "8.6.1")
    names = set(read_calibration_cache(path).scales)
    graph = onnx.load(str(model)).graph
    tensors = {t for n in graph.node for t in list(n.input) + list(n.output)} | {i.name for i in graph.input}
    assert names <= tensors and {"x", "c", "r", "t", "f", "g", "y"} <= names  # every float activation
    assert not names & {i.name for i in graph.initializer}  # weights are not network tensors with ranges
