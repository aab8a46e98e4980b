"""TensorRT version parsing, ordering and the capability table."""

from __future__ import annotations

import pytest

from trtalign.core.errors import ConfigError, UnsupportedError
from trtalign.engines.versions import FEATURES, TrtVersion, capabilities, feature_table


@pytest.mark.parametrize("text,expected", [
    ("8.6", (8, 6, 0, 0)),
    ("10.3.0", (10, 3, 0, 0)),
    ("11.4.0.106", (11, 4, 0, 106)),  # PyPI's 4-part version
    ("trt-10.3", (10, 3, 0, 0)),
    ("8.5.2.2", (8, 5, 2, 2)),  # JetPack 5.1
    ("10.3.0.30+cuda12.6", (10, 3, 0, 30)),  # local version suffixes are ignored
])
def test_parse(text, expected):
    v = TrtVersion.parse(text)
    assert (v.major, v.minor, v.patch, v.build) == expected


@pytest.mark.parametrize("bad,error", [("ten", ConfigError), ("", ConfigError), ("8.4", UnsupportedError),
                                       ("7.2.3", UnsupportedError)])
def test_parse_rejects(bad, error):
    with pytest.raises(error, match="TensorRT"):
        TrtVersion.parse(bad)


def test_ordering_is_numeric_not_lexical():
    assert TrtVersion.parse("10.3") > TrtVersion.parse("8.6") > TrtVersion.parse("8.5.2")
    assert TrtVersion.parse("11.4.0.106") > "10.16"
    assert TrtVersion.parse("8.6") == TrtVersion.parse("8.6.0")
    assert sorted(["11.4", "8.6", "10.3", "10.12"], key=TrtVersion.parse) == ["8.6", "10.3", "10.12", "11.4"]


def test_same_engine_format_ignores_build_only():
    assert TrtVersion.parse("10.3.0.26").same_engine_format(TrtVersion.parse("10.3.0.30"))
    assert not TrtVersion.parse("10.3.0").same_engine_format(TrtVersion.parse("10.4.0"))


@pytest.mark.parametrize("version,feature,has", [
    # cells that are behaviours (no Python API to probe), checked here against TENSORRT.md
    ("8.5.2", "efficient_nms_class_agnostic", False), ("8.6.1", "efficient_nms_class_agnostic", True),
    ("11.2.0", "inspector_schema_11_3", False), ("11.3.0", "inspector_schema_11_3", True),
    ("8.5.2", "load_library", False), ("8.5.2", "builder_optimization_level", False),
    ("10.5.0", "python_plugins", False), ("10.6.0", "python_plugins", True),
    ("10.16.0", "implicit_calibration", True), ("11.0.0", "implicit_calibration", False),
])
def test_capability_cells(version, feature, has):
    assert capabilities(version).has(feature) is has


def test_require_names_the_versions_that_have_it():
    with pytest.raises(UnsupportedError, match=r"TensorRT 8.5 to 10.x \(removed in 11.0\); the target is TensorRT 11.4"):
        capabilities("11.4").require("dynamic_range")
    with pytest.raises(UnsupportedError, match="needs TensorRT >= 10.0"):
        capabilities("8.6").require("strongly_typed")
    with pytest.raises(KeyError):
        capabilities("10.3").has("warp_drive")


def test_feature_table_rows_and_no_enum_ints():
    rows = feature_table()
    assert {r["name"] for r in rows} == set(FEATURES)
    row = next(r for r in rows if r["name"] == "dynamic_range")
    assert (row["8.5.2"], row["10.3.0"], row["11.4.0"]) == (True, True, False)
    assert capabilities("10.3").to_dict()["features"]["strongly_typed"] is True
    assert capabilities("11.4").inspector_schema == "11.3+" and capabilities("10.3").inspector_schema == "pre-11.3"
