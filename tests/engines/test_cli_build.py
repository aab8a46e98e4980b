"""``trtalign build`` and ``trtalign inspect``: plan-only without TensorRT, clear errors, and the full build path
(cache, sidecar, log, inspector JSON) against the 10.3.0 stand-in."""

from __future__ import annotations

import json

import pytest

from trtalign.cli import main

from .conftest import make_onnx
from .test_inspector import PRE_11_3
from .trt_standin import FakeCudaBackend, FakeModel, Standin

LAYERS = [("/model.0/conv/Conv", ["c0"]), ("/model.0/act/Relu", ["r0"]), ("/model.1/conv/Conv", ["c1"]),
          ("/head/Sigmoid", ["output0"])]


def _config(tmp_path, **trt):
    make_onnx(tmp_path / "tiny.onnx")
    make_onnx(tmp_path / "tiny_qdq.onnx", qdq=True)
    trt_yaml = "".join(f"\n  {k}: {v}" for k, v in trt.items())
    (tmp_path / "cfg.yaml").write_text(
        "model: tiny.onnx\nimgsz: 64\nbatch: {min: 1, opt: 2, max: 4}\nprecisions: [fp32, fp16, int8]\n"
        f"outputs: {{dir: out}}\ntrt:{trt_yaml or ' {}'}\n")
    return tmp_path / "cfg.yaml"


def test_plan_only_needs_no_tensorrt(tmp_path, cli):
    cfg = _config(tmp_path)
    code, out, err = cli("build", str(cfg), "--trt-version", "11.4", "--onnx-int8", str(tmp_path / "tiny_qdq.onnx"),
                         "--precision", "fp32", "--precision", "int8", "--plan-only", "--json",
                         str(tmp_path / "plans.json"))
    assert code == 0, err
    assert "int8-qdq" in out and "STRONGLY_TYPED" in out
    data = json.loads((tmp_path / "plans.json").read_text())
    assert [e["route"] for e in data["engines"]] == ["fp32", "int8-qdq"] and data["trt_version"] == "11.4.0"


def test_fp16_on_11_converts_the_float_onnx(tmp_path, cli):
    import onnx

    cfg = _config(tmp_path)
    code, out, err = cli("build", str(cfg), "--trt-version", "11.4", "--precision", "fp16", "--plan-only")
    assert code == 0, err
    typed = tmp_path / "out" / "tiny.fp16.onnx"
    assert "float16-typed" in out and typed.is_file()
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(typed)).graph.initializer)


@pytest.mark.parametrize("argv,message", [
    (["--trt-version", "11.4", "--precision", "int8", "--plan-only"], "'int8-calibrator' needs TensorRT 8.5 to 10.x"),
    (["--trt-version", "10.3", "--precision", "fp16"], "optional dependency 'tensorrt' is not importable"),
    (["--trt-version", "eleven", "--plan-only"], "invalid TensorRT version 'eleven'"),
])
def test_errors_are_one_line_exit_2(tmp_path, cli, argv, message):
    cfg = _config(tmp_path, int8_route="calibrator")
    code, out, err = cli("build", str(cfg), *argv)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_build_cache_sidecar_and_inspect(tmp_path, monkeypatch, capsys):
    import trtalign.cli.build as build_cli
    import trtalign.engines.builder as builder

    standins = []

    def fake_trt():
        standins.append(Standin("10.3.0", FakeModel(layers=LAYERS, inspector_json=json.dumps(PRE_11_3))))
        return standins[-1]

    monkeypatch.setattr(builder, "import_tensorrt", fake_trt)
    monkeypatch.setattr(build_cli, "_gpu", lambda cuda: (FakeCudaBackend(), {"name": "Fake GPU",
                                                                            "compute_capability": "8.6"}))
    cfg = _config(tmp_path)
    argv = ["build", str(cfg), "--trt-version", "10.3", "--precision", "fp16", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    e = report["engines"][0]
    assert not e["cache_hit"] and e["layer_counts"]["int8"] == 1 and e["layer_counts"]["fp16"] == 1
    out = tmp_path / "out"
    assert (out / "tiny.fp16.engine").read_bytes() == b"STANDIN-ENGINE"
    sidecar = json.loads((out / "tiny.fp16.json").read_text())
    assert sidecar["trt_version"] == "10.3.0" and sidecar["compute_capability"] == "8.6"
    assert sidecar["plan"]["builder_flags"] == ["FP16"] and "--precision fp16 --force" in sidecar["rebuild_command"]
    assert (out / "engines" / f"{e['cache_key']}.engine").is_file() and (out / "tiny.fp16.layers.json").is_file()
    assert (out / "logs" / "tiny.fp16.trt.log").is_file()
    assert "Builder.build_serialized_network" in standins[0].targets()

    assert main(argv) == 0  # same ONNX, plan, TensorRT and GPU: served from the cache, nothing built
    assert json.loads((tmp_path / "r.json").read_text())["engines"][0]["cache_hit"] is True
    assert "Builder.build_serialized_network" not in standins[1].targets()

    make_onnx(tmp_path / "tiny.onnx", batch="n")  # same file name, different bytes: new key, rebuilt
    assert main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["engines"][0]["cache_hit"] is False

    capsys.readouterr()
    assert main(["inspect", str(out / "tiny.fp16.engine"), "--layers"]) == 0
    text = capsys.readouterr().out
    assert "built with TensorRT 10.3.0 on Fake GPU (sm 8.6), fp16 via fp16" in text
    assert "INT8 1, FP16 1, FP32 2" in text and "/model.22/dfl/conv/Conv" in text


def test_inspect_reads_an_inspector_json_and_reports_missing_files(tmp_path, cli):
    info = tmp_path / "layers.json"
    info.write_text(json.dumps(PRE_11_3))
    code, out, err = cli("inspect", str(info), "--json", str(tmp_path / "s.json"))
    assert code == 0, err
    assert "5 engine layers: INT8 1, FP16 1, FP32 2, other 1 (inspector schema pre-11.3)" in out
    assert json.loads((tmp_path / "s.json").read_text())["layers"]["counts"]["fp32"] == 2
    code, out, err = cli("inspect", str(tmp_path / "none.engine"))
    assert code == 2 and "file not found" in err
    # e.g. from trtexec: no sidecar, no layer JSON: nothing to show without --live, which is an error, not exit 0
    (tmp_path / "bare.engine").write_bytes(b"ftrt\x00\x01\xfe\xff" * 8)
    code, out, err = cli("inspect", str(tmp_path / "bare.engine"))
    assert code == 2 and "nothing to inspect" in err and "--live" in err and err.count("\n") == 1
