"""scripts/extract_trt_surface.py: pybind11 signature parsing, the stub libraries, and the committed surfaces."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from .trt_standin import SURFACES, VERSIONS, load_surface

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "extract_trt_surface.py"


@pytest.fixture(scope="module")
def extract():
    spec = importlib.util.spec_from_file_location("extract_trt_surface", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("line,name,params,returns", [
    ("build_serialized_network(self: tensorrt.tensorrt.Builder, network: tensorrt.tensorrt.INetworkDefinition, "
     "config: tensorrt.tensorrt.IBuilderConfig) -> tensorrt.tensorrt.IHostMemory", "build_serialized_network",
     [("self", False), ("network", False), ("config", False)], "tensorrt.tensorrt.IHostMemory"),
    ("create_network(self: tensorrt.tensorrt.Builder, flags: int = 0) -> tensorrt.tensorrt.INetworkDefinition",
     "create_network", [("self", False), ("flags", True)], "tensorrt.tensorrt.INetworkDefinition"),
    # nested brackets and commas inside a type do not split parameters
    ("2. set_shape(self: X, input: str, min: Dict[str, Tuple[int, int]], opt: list[int] = [1, 2], max: int = 3) "
     "-> None", "set_shape", [("self", False), ("input", False), ("min", False), ("opt", True), ("max", True)],
     "None"),
])
def test_parse_signature_line(extract, line, name, params, returns):
    sig = extract.parse_signature_line(line, name)
    assert [(p["name"], p["default"]) for p in sig["params"]] == params and sig["returns"] == returns


def test_overloaded_docstring_keeps_each_overload(extract):
    doc = ("deserialize_cuda_engine(*args, **kwargs)\nOverloaded function.\n\n"
           "1. deserialize_cuda_engine(self: R, serialized_engine: buffer) -> E\n\nDeserialize...\n\n"
           "2. deserialize_cuda_engine(self: R, stream_reader: IStreamReader) -> E\n")
    sigs = extract.parse_signatures(doc, "deserialize_cuda_engine")
    assert [[p["name"] for p in s["params"]] for s in sigs] == [["self", "serialized_engine"], ["self", "stream_reader"]]


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("nm")), reason="needs gcc and nm (binutils)")
@pytest.mark.parametrize("version", VERSIONS)
def test_stub_library_exports_exactly_the_symbols_tensorrt_so_needs(extract, tmp_path, version):
    surface = load_surface(version)
    lib = surface["stubbed_libraries"][0]
    out = extract.write_stub_library(surface["stubbed_symbols"], tmp_path / lib, lib)
    defined = subprocess.run(["nm", "-D", "--defined-only", str(out)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert set(surface["stubbed_symbols"]) <= set(defined)  # mangled C++ names included (asm labels)


@pytest.mark.parametrize("version", VERSIONS)
def test_committed_surfaces_are_real_extractions(version):
    surface = load_surface(version)
    assert surface["version"].startswith(version)
    assert surface["extracted_from"] == "tensorrt_bindings/tensorrt.so"
    assert "createInferBuilder_INTERNAL" in surface["stubbed_symbols"]
    m = surface["module"]
    assert len([k for k, v in m.items() if v["kind"] == "class"]) > 100
    assert m["Builder"]["methods"]["build_serialized_network"]["signatures"]
    assert {p.name for p in SURFACES.glob("*.json")} == {f"{v}.json" for v in VERSIONS}
