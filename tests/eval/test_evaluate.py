"""evaluate(): runners over a generated dataset -> metrics per precision, saved detections, `trtalign eval`.

A random-init yolov8n (8 classes, 96 px) on generated images checks the machinery (torch and ONNX Runtime give the
same detections, saved detections re-score to the same numbers, JSON keys are stable, errors are one line); the
accuracy claims on the bundled proxy models are the slow test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.errors import ConfigError, InputError
from trtalign.eval.evaluate import NmsSettings, evaluate, parse_precisions

IMGSZ = 96
RESULT_KEYS = {"task", "metric", "model", "imgsz", "batch", "reference", "nms", "dataset", "calibration", "results",
               "skipped"}
PRECISION_KEYS = {"precision", "runner", "model", "metrics", "delta_map", "delta_map50", "latency", "detections_file",
                  "notes", "delta_map_ci95", "delta_map50_ci95"}
ASSETS = Path(__file__).resolve().parents[2] / "trtalign" / "assets" / "models"


def _nc8_yaml(folder: Path) -> Path:
    import ultralytics
    import yaml

    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
    cfg.update(nc=8, scale="n")
    path = folder / "yolov8n_nc8.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.params import SynthParams

    root = tmp_path_factory.mktemp("evaluate")
    generate_dataset(root / "data", SynthParams(task="detect", imgsz=IMGSZ), train=8, val=5, seed=3)
    model = _nc8_yaml(root)
    result = evaluate(model, root / "data", ["torch", "fp32", "fp16"], imgsz=IMGSZ, batch=2, workdir=root / "work",
                      save_detections_dir=root / "dets", nms=NmsSettings(torch_nms="aligned"))
    return root, model, result


def test_result_structure_and_stable_keys(setup):
    root, _, result = setup
    d = json.loads(json.dumps(result.to_dict()))  # JSON-serialisable
    assert set(d) == RESULT_KEYS
    assert [r["runner"] for r in d["results"]] == ["torch", "ort-fp32", "ort-fp16sim"]
    for r in d["results"]:
        assert set(r) == PRECISION_KEYS
        assert set(r["metrics"]["stats"]) == {"map", "map50", "map75", "map_small", "map_medium", "map_large",
                                              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"}
        assert r["metrics"]["num_images"] == 5 and r["latency"]["images"] == 5 and r["latency"]["median_ms"] > 0
        assert r["latency"]["batch"] == 2
    assert d["reference"] == "torch" and d["results"][0]["delta_map"] == 0.0
    assert d["results"][0]["delta_map_ci95"] == [0.0, 0.0]  # the reference against itself
    for r in d["results"][1:]:  # a paired bootstrap interval around each delta
        lo, hi = r["delta_map_ci95"]
        assert lo <= round(r["delta_map"], 6) <= hi and len(r["delta_map50_ci95"]) == 2
    assert d["metric"] == "coco-bbox" and d["imgsz"] == [IMGSZ, IMGSZ] and d["dataset"]["images"] == 5
    assert "FP16 emulation" in d["results"][2]["notes"][0]


def _load(path: str) -> dict:
    per: dict = {}
    for row in json.loads(Path(path).read_text()):
        per.setdefault(row["image_id"], []).append(row)
    return per


def test_torch_and_ort_fp32_give_the_same_detections(setup):
    _, _, result = setup
    torch_dets = _load(result.result("torch").detections_file)
    ort_dets = _load(result.result("ort-fp32").detections_file)
    assert set(torch_dets) == set(ort_dets) and torch_dets
    for iid in torch_dets:
        a, b = torch_dets[iid], ort_dets[iid]
        assert len(a) == len(b) > 0
        # same NMS on both sides (aligned): sorted scores agree to float noise
        np.testing.assert_allclose(sorted(r["score"] for r in a), sorted(r["score"] for r in b), atol=1e-5)
    assert result.result("ort-fp32").delta_map == pytest.approx(0.0, abs=1e-3)


def test_saved_detections_rescore_identically_with_pycocotools(setup):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, _, result = setup
    for r in result.results:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(root / "dets" / "ground_truth_coco.json"))
            rows = json.loads(Path(r.detections_file).read_text())
            ev = COCOeval(gt, gt.loadRes(rows), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # saved boxes are rounded to 1e-3 px and scores to 1e-6
        assert ev.stats[0] == pytest.approx(r.metrics.stats["map"], abs=1e-4)
        assert ev.stats[8] == pytest.approx(r.metrics.stats["mar_100"], abs=1e-4)


def test_int8_emulation_runs_on_the_qdq_model(setup):
    root, _, result = setup
    onnx_path = Path(result.result("ort-fp32").model)
    res = evaluate(onnx_path, root / "data", ["fp32", "int8"], workdir=root / "work_int8", max_images=3)
    assert not res.skipped, res.skipped
    int8 = res.result("ort-int8sim")
    assert "calibrated on the train split" in int8.notes[0] and Path(int8.model).name.endswith(".qdq.onnx")
    assert res.reference == "ort-fp32" and int8.metrics.num_images == 3
    # the JSON says which calibration was applied
    assert res.to_dict()["calibration"]["method"] == "minmax" and res.to_dict()["calibration"]["num"] == 64
    # one INT8 definition (issue 13 bug 6): the emulated model is the default plan's Q/DQ ONNX (head output in fp16)
    import onnx

    from trtalign.export.units import analyze_graph, default_plan, make_plan

    meta = {p.key: p.value for p in onnx.load(int8.model).metadata_props}
    units = analyze_graph(str(onnx_path)).units
    assert json.loads(meta["trtalign_quantization"])["plan"] == default_plan(units).units == make_plan(units).units
    assert "fp16" in default_plan(units).units.values()


def test_onnx_model_skips_torch_with_reason(setup):
    root, _, result = setup
    res = evaluate(Path(result.result("ort-fp32").model), root / "data", ["torch", "fp32"], max_images=2,
                   workdir=root / "work_onnx")
    assert "torch" in res.skipped and "needs the .pt/.yaml" in res.skipped["torch"]
    assert [r.runner for r in res.results] == ["ort-fp32"] and res.reference == "ort-fp32"


@pytest.mark.parametrize("text, expected", [
    ("torch,fp32,fp16,int8", ["torch", "fp32", "fp16", "int8"]),
    ("ort-fp16sim, fp32", ["fp16", "fp32"]),  # runner names are accepted
    ("fp32,fp32", ["fp32"]),
])
def test_parse_precisions(text, expected):
    assert parse_precisions(text) == expected


def test_parse_precisions_rejects_unknown():
    with pytest.raises(ConfigError, match="invalid precision 'fp64'.*valid choices"):
        parse_precisions("fp32,fp64")


def test_dataset_task_mismatch_and_missing(setup):
    root, model, _ = setup
    with pytest.raises(InputError, match="dataset not found"):
        evaluate(model, root / "nope", ["fp32"], imgsz=IMGSZ)


def test_cli_eval_end_to_end_and_errors(setup, cli, tmp_path):
    root, _, result = setup
    onnx_path = result.result("ort-fp32").model
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code, out, err = cli("eval", onnx_path, "--data", str(root / "data"), "--precisions", "fp32",
                         "--max-images", "2", "--json", str(out_json), "--report", str(out_html))
    assert code == 0, err
    assert "ort-fp32" in out and "mAP50-95" in out
    data = json.loads(out_json.read_text())
    assert set(data) == RESULT_KEYS and [r["runner"] for r in data["results"]] == ["ort-fp32"]
    assert out_html.read_text().startswith("<!DOCTYPE html>")
    # bad input: one line on stderr, exit 2, nothing written
    bad_json = tmp_path / "bad.json"
    # the settings actually applied: an exported ONNX's own NMS attributes (issue 13 bug 4)
    assert (data["nms"]["iou_threshold"], data["nms"]["max_det"]) == (data["nms"]["onnx"]["iou_threshold"],
                                                                      data["nms"]["onnx"]["max_output_boxes"])
    for args, message in [(["--precisions", "fp64"], "invalid precision"),
                          (["--data", str(tmp_path / "missing")], "dataset not found"),
                          (["--iou", "0.5"], "NMS baked in, so --iou 0.5 (the file has 0.7) cannot be applied"),
                          (["--json", str(tmp_path)], "is a folder; give a file name")]:
        argv = ["eval", onnx_path, "--json", str(bad_json)] + (["--data", str(root / "data")] if "--data" not in args
                                                                else []) + args
        code, out, err = cli(*argv)
        assert code == 2 and message in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1
        assert not bad_json.exists()


@pytest.mark.slow
@pytest.mark.parametrize("task", ["detect", "obb"])
def test_bundled_proxy_model_precisions(task, tmp_path):
    """The claims on the bundled proxy models, on their own val distribution (card seed and parameters): ORT FP32
    equals torch within 0.001 with aligned NMS, FP16 emulation within 0.002 of FP32, INT8 emulation runs and its
    delta is reported."""
    if not (ASSETS / f"proxy_{task}.pt").is_file():
        pytest.skip(f"bundled proxy model trtalign/assets/models/proxy_{task}.pt not present yet")
    from trtalign.data.synth.dataset import generate_dataset
    from trtalign.data.synth.proxy_models import check_split_params, load_card, proxy_model_path

    card = load_card(task)
    params, seed, _ = check_split_params(card)
    generate_dataset(tmp_path / "data", params, train=16, val=60, seed=seed)
    res = evaluate(proxy_model_path(task), tmp_path / "data", ["torch", "fp32", "fp16", "int8"], imgsz=params.imgsz,
                   workdir=tmp_path / "w", nms=NmsSettings(torch_nms="aligned"))
    print(res.summary())
    # the model works as its card says (the card's ultralytics score is on another split and, for OBB, another IoU:
    # ProbIoU there, exact polygon IoU here, so only the order of magnitude is compared)
    assert res.result("torch").map > 0.4 * card["check"]["map50_95"]
    assert abs(res.result("ort-fp32").delta_map) <= 0.001
    assert abs(res.result("ort-fp16sim").map - res.result("ort-fp32").map) <= 0.002
    assert res.result("ort-int8sim").delta_map is not None


def test_cli_reads_a_pipeline_config(tmp_path):
    """CONFIG_OR_MODEL: a pipeline config supplies model, data, precisions, imgsz and the calibration (images, method,
    count, excluded units: issue 13 bug 4 — the config's calibration.method and num used to be ignored); a model
    yaml stays a model."""
    import argparse

    from trtalign.cli import eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("model: m.onnx\nimgsz: 320\nprecisions: [fp32, fp16]\ndata: {val: data/val}\n"
                   "calibration: {images: calib, method: percentile, num: 9}\nquantize: {exclude: ['model.2*']}\n")
    s = eval_cmd._from_config(parser.parse_args([str(cfg)]))
    assert (s["model"], s["data"], s["precisions"], s["imgsz"]) == (str(tmp_path / "m.onnx"), str(tmp_path / "data/val"),
                                                                    ["fp32", "fp16"], 320)
    c = s["calibration"]
    assert (str(c.images), c.method, c.num, c.exclude) == (str(tmp_path / "calib"), "percentile", 9, ("model.2*",))
    # command-line options win over the config
    s = eval_cmd._from_config(parser.parse_args([str(cfg), "--data", "x", "--precision", "int8", "--calib-method",
                                                 "mse", "--calib-num", "20"]))
    assert (s["data"], s["precisions"], s["calibration"].method, s["calibration"].num) == ("x", ["int8"], "mse", 20)
    assert eval_cmd._from_config(parser.parse_args([str(cfg), "--precisions", "int8,fp32"]))["precisions"] == \
        ["int8", "fp32"]  # the old spelling is a hidden alias
    arch = tmp_path / "yolov8n_custom.yaml"
    arch.write_text("nc: 8\nbackbone: []\nhead: []\n")
    s = eval_cmd._from_config(parser.parse_args([str(arch), "--data", "d"]))
    assert (s["model"], s["data"], s["calibration"].method) == (str(arch), "d", "minmax")


def test_compare_runs_another_export_beside_the_precisions(setup, tmp_path, cli):
    """``compare`` (``eval --compare NAME=ONNX``): another export of the same model is one more row with its delta
    and interval (the FP32 file compared with itself: exactly 0 and [0, 0]); a file of another model is refused."""
    from trtalign.core.errors import InputError
    from trtalign.export.onnx_export import export_onnx

    root, model, result = setup
    fp32 = Path(result.result("ort-fp32").model)
    res = evaluate(fp32, root / "data", ["fp32"], workdir=root / "work_compare", compare={"same": fp32})
    row = res.result("ort-same")
    assert row.precision == "compare" and row.model == str(fp32)
    assert row.metrics.stats["map"] == res.result("ort-fp32").metrics.stats["map"]
    assert row.delta_map == 0.0 and row.delta_map_ci95 == [0.0, 0.0]
    other = tmp_path / "other.onnx"
    export_onnx(model, other, imgsz=IMGSZ * 2)
    with pytest.raises(InputError, match="expected detect, 8 classes at"):
        evaluate(fp32, root / "data", ["fp32"], workdir=root / "work_compare", compare={"other": other})
    code, out, err = cli("eval", str(fp32), "--data", str(root / "data"), "--precisions", "fp32",
                         "--compare", f"missing={tmp_path / 'nope.onnx'}")
    assert code == 2 and "file not found" in err and "Traceback" not in err, err
    code, out, err = cli("eval", str(fp32), "--data", str(root / "data"), "--precisions", "fp32", "--compare", "x")
    assert code == 2 and "NAME=FILE.onnx" in err, err
