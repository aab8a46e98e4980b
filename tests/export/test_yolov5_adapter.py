"""YOLOv5 checkpoints through YOLOv5's own code: family sniffing, export -> ORT equals YOLOv5's torch output,
detections after the in-graph NMS match YOLOv5's own ``non_max_suppression``; the ultralytics file-substitution guard.

Two models: one generated here from the ``yolov5`` package's ``yolov5n.yaml`` (3 classes, always runs) and the
official COCO checkpoint in ../shared/real (skipped, with the reason, when that folder is absent).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from trtalign.core.errors import InputError, ModelError
from trtalign.export.adapters import load_adapter
from trtalign.export.adapters.yolov5 import YoloV5Adapter, is_yolov5_checkpoint, pickle_modules
from trtalign.export.onnx_export import export_onnx
from trtalign.runtime.ort_runner import OrtRunner

torch = pytest.importorskip("torch")
if importlib.util.find_spec("yolov5") is None:  # imported through the adapter's scoped pkg_resources stand-in
    pytest.skip("the yolov5 package is not installed (pip install 'trtalign[yolov5]')", allow_module_level=True)

REAL = Path(__file__).resolve().parents[3] / "shared" / "real"
REAL_PT = REAL / "yolov5n.pt"
REAL_IMAGES = REAL / "coco" / "images" / "val2017"


def _yolov5_code():
    from trtalign.export.adapters.yolov5 import _yolov5_import_context

    with _yolov5_import_context(None):
        from yolov5.models.yolo import DetectionModel
        from yolov5.utils.general import non_max_suppression
    return DetectionModel, non_max_suppression


@pytest.fixture(scope="module")
def generated_pt(tmp_path_factory) -> Path:
    return make_yolov5_checkpoint(tmp_path_factory.mktemp("v5") / "yolov5n.pt")  # a name ultralytics rewrites


def make_yolov5_checkpoint(path: Path) -> Path:
    """A 3-class YOLOv5n from the package's yaml, with spread-out objectness, saved like YOLOv5's train.py does."""
    DetectionModel, _ = _yolov5_code()
    torch.manual_seed(0)
    cfg = Path(sys.modules["yolov5.models.yolo"].__file__).parent / "yolov5n.yaml"
    model = DetectionModel(str(cfg), ch=3, nc=3).float().eval()
    model.names = ["a", "b", "c"]
    head = model.model[-1]
    with torch.no_grad():  # objectness / class logits spread around -2 so that NMS decisions are not ties
        for conv in head.m:
            conv.weight.mul_(4.0)
            conv.bias.normal_(-2.0, 1.0)
    torch.save({"epoch": -1, "model": model, "ema": None}, path)
    return path


def iou_matched_fraction(ref: np.ndarray, got: np.ndarray, iou: float = 0.9) -> float:
    """Fraction of ``ref`` rows (x1, y1, x2, y2, score, class) with an unmatched ``got`` row of the same class and
    IoU >= ``iou`` (greedy, in ``ref`` order). 1.0 when both are empty."""
    if len(ref) == 0:
        return 1.0 if len(got) == 0 else 0.0
    used = np.zeros(len(got), bool)
    hits = 0
    for r in ref:
        x1 = np.maximum(r[0], got[:, 0]); y1 = np.maximum(r[1], got[:, 1])
        x2 = np.minimum(r[2], got[:, 2]); y2 = np.minimum(r[3], got[:, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        union = (r[2] - r[0]) * (r[3] - r[1]) + (got[:, 2] - got[:, 0]) * (got[:, 3] - got[:, 1]) - inter
        ious = np.where(union > 0, inter / np.maximum(union, 1e-9), 0)
        ious[(got[:, 5] != r[5]) | used] = -1
        if len(ious) and ious.max() >= iou:
            used[int(ious.argmax())] = True
            hits += 1
    return hits / len(ref)


def _compare(pt: Path, x: np.ndarray, tmp_path: Path, conf: float, iou: float) -> None:
    """Export ``pt`` at x's size; ORT raw head vs YOLOv5's own model; NMS node vs YOLOv5's non_max_suppression."""
    _, non_max_suppression = _yolov5_code()
    imgsz = x.shape[2]
    adapter = load_adapter(pt)
    assert isinstance(adapter, YoloV5Adapter)
    out = tmp_path / "m.onnx"
    export_onnx(pt, out, imgsz=imgsz, batch=x.shape[0], score_threshold=conf, iou_threshold=iou, max_det=300, adapter=adapter)
    raw = adapter.to_raw_onnx(imgsz, batch=x.shape[0])
    with OrtRunner(raw.SerializeToString(), name="raw") as runner:
        output0 = runner.infer({"images": x})["output0"]
    with torch.no_grad():
        native = adapter.native_model()(torch.from_numpy(x))[0]  # YOLOv5's own [B, N, 5 + C]
    nat = native.numpy()
    expected = np.concatenate([nat[..., :4], nat[..., 5:] * nat[..., 4:5]], axis=-1).transpose(0, 2, 1)
    assert output0.shape == expected.shape
    scale = float(np.abs(expected).max())
    assert float(np.abs(output0 - expected).max()) <= 1e-4 * scale
    ref = non_max_suppression(native, conf_thres=conf, iou_thres=iou, multi_label=True, max_det=300)
    with OrtRunner(str(out)) as runner:
        res = runner.infer({"images": x})
    for b in range(x.shape[0]):
        n = int(res["num_detections"][b, 0])
        got = np.concatenate([res["detection_boxes"][b, :n], res["detection_scores"][b, :n, None],
                              res["detection_classes"][b, :n, None].astype(np.float32)], axis=1)
        want = ref[b].numpy()
        assert len(want) > 0
        assert iou_matched_fraction(want, got) >= 0.995
        assert iou_matched_fraction(got, want) >= 0.995


# ---------------------------------------------------------------------------------------------------- family
def test_family_is_read_from_the_pickle(generated_pt):
    assert "yolov5.models.yolo" in pickle_modules(generated_pt)
    assert is_yolov5_checkpoint(generated_pt)
    adapter = load_adapter(generated_pt)
    assert isinstance(adapter, YoloV5Adapter)
    assert adapter.info.names == ["a", "b", "c"] and adapter.info.strides == [8, 16, 32]


def test_ultralytics_checkpoint_is_not_yolov5(tmp_path):
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    path = tmp_path / "u.pt"
    YOLO("yolov8n.yaml").save(str(path))
    assert not is_yolov5_checkpoint(path)
    assert load_adapter(path).family == "ultralytics"


def test_pkg_resources_stand_in_is_scoped(generated_pt):
    had = "pkg_resources" in sys.modules
    path = list(sys.path)
    YoloV5Adapter(generated_pt).info  # noqa: B018  # loads through YOLOv5's code
    assert ("pkg_resources" in sys.modules) == had
    assert sys.path == path


def test_repo_must_be_a_yolov5_clone(generated_pt, tmp_path):
    with pytest.raises(InputError, match="not a YOLOv5 clone"):
        YoloV5Adapter(generated_pt, repo=tmp_path).info  # noqa: B018


# ---------------------------------------------------------------------------------------------------- export
def test_generated_export_matches_yolov5(generated_pt, tmp_path):
    x = np.random.default_rng(0).random((2, 3, 160, 160), dtype=np.float32)
    _compare(generated_pt, x, tmp_path, conf=0.1, iou=0.45)  # fewer than max_det: no cut among ties


def test_generated_dynamic_batch(generated_pt, tmp_path):
    out = tmp_path / "dyn.onnx"
    result = export_onnx(generated_pt, out, imgsz=160, dynamic_batch=4)
    assert result.batch == "batch" and result.family == "yolov5"
    x = np.random.default_rng(1).random((3, 3, 160, 160), dtype=np.float32)
    with OrtRunner(str(out)) as runner:
        assert runner.infer({"images": x})["num_detections"].shape == (3, 1)


def test_torch_runner_runs_yolov5(generated_pt):
    from trtalign.runtime.torch_runner import TorchRunner

    x = np.random.default_rng(2).random((1, 3, 160, 160), dtype=np.float32)
    with TorchRunner(generated_pt, imgsz=160) as runner:
        y = runner.infer({"images": x})["output0"]
    assert y.shape == (1, 4 + 3, (20 * 20 + 10 * 10 + 5 * 5) * 3)
    assert 0.0 <= y[:, 4:].min() and y[:, 4:].max() <= 1.0


@pytest.mark.skipif(not REAL_PT.is_file(), reason=f"{REAL_PT} absent (the shared real model)")
def test_real_yolov5n_matches_at_320(tmp_path):
    from trtalign.core.preprocess import letterbox_batch, list_images, read_image

    images = list_images(REAL_IMAGES)[:2]
    x, _ = letterbox_batch([read_image(p) for p in images], 320)
    _compare(REAL_PT, x, tmp_path, conf=0.25, iou=0.45)


# ---------------------------------------------------------------------------------------------------- guard
def test_ultralytics_substitution_is_refused(tmp_path, monkeypatch):
    """ultralytics loads ./yolov5nu.pt for 'yolov5n.pt': the export must refuse, naming both files."""
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    from trtalign.export.adapters.ultralytics import UltralyticsAdapter

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    YOLO("yolov8n.yaml").save("yolov5nu.pt")
    torch.manual_seed(2)
    YOLO("yolov8n.yaml").save("yolov5n.pt")
    with pytest.raises(ModelError, match=r"loaded yolov5nu\.pt instead of the requested yolov5n\.pt"):
        UltralyticsAdapter("yolov5n.pt").info  # noqa: B018
    assert UltralyticsAdapter("yolov5nu.pt").info.family == "ultralytics"  # the file it names: accepted


def test_config_model_repo_reaches_the_adapter(generated_pt, tmp_path, cli):
    """``model: {path, repo}`` in a config: the clone is the one YOLOv5's classes are loaded from (a folder that is
    not a clone is refused by name), for export and for the loaders every other command uses."""
    from trtalign.core.config import load_config
    from trtalign.export.loaders import OnnxFromModel

    not_a_clone = tmp_path / "not_a_clone"
    not_a_clone.mkdir()
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(f"model:\n  path: {generated_pt}\n  repo: not_a_clone\nimgsz: 64\n", encoding="utf-8")
    cfg = load_config(cfg_path)
    assert cfg.model == Path(generated_pt) and cfg.model_repo == not_a_clone.resolve()
    with pytest.raises(InputError, match="not a YOLOv5 clone"):
        OnnxFromModel(cfg.model, tmp_path, imgsz=64, repo=cfg.model_repo)()
    code, out, err = cli("export", "--config", str(cfg_path), "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "not a YOLOv5 clone" in err and "Traceback" not in err, err
    assert not (tmp_path / "m.onnx").exists()
    cfg_path.write_text(f"model:\n  path: {generated_pt}\n  weights: x\n", encoding="utf-8")
    code, out, err = cli("export", "--config", str(cfg_path), "--out", str(tmp_path / "m.onnx"))
    assert code == 2 and "weights" in err and "path, repo" in err, err
    code, out, err = cli("export", str(cfg_path), "--out", str(tmp_path / "m.onnx"))  # the config as MODEL
    assert code == 2 and "--config" in err and "Traceback" not in err, err
