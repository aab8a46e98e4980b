"""`trtalign qat`: bad input gives one clear line and exit 2 (in-process ``trtalign.cli.main``: same dispatcher and
error mapping as the entry point)."""

from __future__ import annotations

import pytest

from cli_helpers import assert_one_line_error, main_captured

pytest.importorskip("ultralytics")
pytest.importorskip("torch")

IMGSZ = 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from trtalign.data.synth import SynthParams, generate_dataset

    root = tmp_path_factory.mktemp("qat_cli_data")
    generate_dataset(root, SynthParams(imgsz=IMGSZ), train=8, val=2, seed=3, show_progress=False)
    return root


def _config(path, model, data, **qat):
    lines = [f"model: {model}", f"imgsz: {IMGSZ}", "qat:", f"  data: {data}"]
    lines += [f"  {k}: {v}" for k, v in qat.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("case, fragment", [
    ("onnx-model", "QAT fine-tunes ultralytics checkpoints"),  # a family QAT does not fine-tune
    ("foreign-pt", "cannot load"),                               # a .pt that is no ultralytics checkpoint
    ("empty-train", "has no images"),                            # an empty training set
    ("other-plan", "plan does not match the model"),             # a plan from another model
    ("no-data", "qat needs a training dataset"),                 # qat.data missing
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, yolo_checkpoint, synth, case, fragment):
    import torch

    from trtalign.export.units import Plan, save_plan

    pt = yolo_checkpoint("yolov8n.yaml")
    data, model, qat = synth, pt, {}
    if case == "onnx-model":
        model = tmp_path / "m.onnx"
        model.write_bytes(b"not used: the suffix decides")
    elif case == "foreign-pt":
        model = tmp_path / "foreign.pt"
        torch.save({"weights": torch.zeros(3)}, str(model))
    elif case == "empty-train":
        data = tmp_path / "empty"
        (data / "images" / "train").mkdir(parents=True)
        (data / "images" / "val").mkdir(parents=True)
        (data / "data.yaml").write_text(f"path: {data}\ntrain: images/train\nval: images/val\nnames:\n  0: a\n")
    elif case == "other-plan":
        save_plan(Plan(units={"model.0.conv": "int8", "other.model.conv": "fp16"}), tmp_path / "plan.json")
        qat = {"start": "plan", "plan": tmp_path / "plan.json"}
    cfg = _config(tmp_path / "qat.yaml", model, data, **qat)
    if case == "no-data":
        cfg.write_text(f"model: {model}\nimgsz: {IMGSZ}\n")
    rc, _, err = main_captured(capsys, "qat", str(cfg), "--out", str(tmp_path / "out"))
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "out" / "model.qat.qdq.onnx").exists()


@pytest.mark.slow  # one epoch + five evaluations: ~30 s of CPU
def test_qat_end_to_end_writes_a_buildable_qdq_onnx_and_report(capsys, tmp_path, synth):
    import json

    import onnx

    from trtalign.export.metadata import read_metadata

    from trtalign.data.synth.proxy_models import proxy_model_path

    # the bundled detect proxy (yolov8n trained on generated shapes, the synth class names), run at 64 px
    cfg = _config(tmp_path / "qat.yaml", proxy_model_path("detect"), synth, epochs=1, batch=2)
    out = tmp_path / "out"
    rc, stdout, err = main_captured(capsys, "qat", str(cfg), "--out", str(out), "--json", str(tmp_path / "qat.json"))
    assert rc == 0, err
    result = json.loads((tmp_path / "qat.json").read_text())
    assert [e["epoch"] for e in result["epochs"]] == [0, 1]
    assert set(result["comparison"]) == {"fp32", "fp16", "ptq", "qat"}
    # no qat.loss / qat.lr in the config: the detect proxy gets detect's recipe, the explicit epochs stay
    from trtalign.tune.qat import RECIPES

    assert result["settings"]["loss"] == RECIPES["detect"]["loss"] == "distill"
    assert result["settings"]["lr"] == RECIPES["detect"]["lr"]["distill"] and result["settings"]["epochs"] == 1
    assert result["settings"]["augment"] is RECIPES["detect"]["augment"]["distill"] is False
    assert result["notes"]["requested"] == {"loss": "auto", "lr": None, "epochs": 1, "augment": None}
    assert result["int8_mac_fraction"] == pytest.approx(1.0)
    model = onnx.load(result["files"]["onnx"])
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and "EfficientNMS_TRT" in ops  # Q/DQ + the NMS node
    meta = read_metadata(result["files"]["onnx"])
    assert meta["imgsz"] == [IMGSZ, IMGSZ] and meta["nms"]["op"] == "EfficientNMS_TRT"
    engine_yaml = (out / "engine.yaml").read_text()
    assert "int8_route: qdq" in engine_yaml and "plan.json" in engine_yaml
    html = (out / "report.html").read_text()
    assert "Quantization-aware training" in html and "QAT beside FP32" in html and "<img" in html
    assert "model.qat.qdq.onnx" in stdout
