"""NMS-free heads (ultralytics YOLOv10, YOLO26, built offline from their yaml files): the one-to-one head exports
without an NMS node (ultralytics' own top-k selection in standard ONNX ops) and matches ultralytics' end-to-end
output; the one-to-many head (the default) exports with EfficientNMS and matches the torch raw head."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest

from tests.conftest import make_scored_checkpoint
from trtalign.core.errors import InputError
from trtalign.export.adapters import load_adapter
from trtalign.export.graph_nms import NMS_OP_TYPES, TOPK_SELECT, NmsAttributes, topk_select
from trtalign.export.metadata import read_metadata
from trtalign.export.onnx_export import export_onnx
from trtalign.runtime.ort_runner import OrtRunner

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

IMGSZ = 160
MODELS = ["yolov10n.yaml", "yolo26n.yaml"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, image_folder):
    """Scored checkpoints whose one-to-one class convs carry the same signal as the one-to-many ones."""
    out = {}
    folder = tmp_path_factory.mktemp("e2e")
    for yaml_name in MODELS:
        path = make_scored_checkpoint(yaml_name, folder / yaml_name.replace(".yaml", ".pt"), image_folder, IMGSZ)
        ckpt = torch.load(str(path), weights_only=False)
        det = ckpt["model"].model[-1]
        for src, dst in zip(det.cv3, det.one2one_cv3):
            dst.load_state_dict(src.state_dict())
        torch.save(ckpt, str(path))
        out[yaml_name] = path
    return out


def _images(folder, count: int) -> np.ndarray:
    from trtalign.core.preprocess import letterbox_batch, list_images, read_image

    return letterbox_batch([read_image(p) for p in list_images(folder)[:count]], IMGSZ)[0]


def _ultralytics_end2end(path, x: np.ndarray, max_det: int) -> np.ndarray:
    """ultralytics' own end-to-end inference: ``[B, max_det, 6]`` (x1, y1, x2, y2, score, class)."""
    from ultralytics import YOLO

    model = copy.deepcopy(YOLO(str(path)).model).float().eval()
    det = model.model[-1]
    det.end2end, det.max_det = True, max_det
    model = model.fuse(verbose=False)
    with torch.no_grad():
        y = model(torch.from_numpy(x))
    return (y[0] if isinstance(y, (list, tuple)) else y).numpy()


@pytest.mark.parametrize("yaml_name", MODELS)
def test_one2one_head_matches_ultralytics_end2end(checkpoints, tmp_path, yaml_name, image_folder):
    path = checkpoints[yaml_name]
    out = tmp_path / "e2e.onnx"
    result = export_onnx(path, out, imgsz=IMGSZ, head="one2one", score_threshold=0.0, max_det=100, batch=2)
    model = onnx.load(str(out))
    assert result.nms_op == TOPK_SELECT and not any(n.op_type in NMS_OP_TYPES for n in model.graph.node)
    assert read_metadata(model)["nms"]["op"] == TOPK_SELECT
    onnx.checker.check_model(model, full_check=True)
    x = _images(image_folder, 2)
    ref = _ultralytics_end2end(path, x, 100)
    with OrtRunner(str(out)) as runner:
        got = runner.infer({"images": x})
    assert got["num_detections"][:, 0].tolist() == [100, 100]
    assert float(np.ptp(ref[..., 4])) > 0.1  # scores carry signal: the comparison is not among ties
    for b in range(2):
        same = (got["detection_classes"][b] == ref[b, :, 5].astype(np.int32)) & \
               (np.abs(got["detection_boxes"][b] - ref[b, :, :4]).max(axis=1) <= 1e-3)
        assert same.mean() >= 0.995
        np.testing.assert_allclose(got["detection_scores"][b], ref[b, :, 4], rtol=0, atol=1e-4)  # ORT vs torch numerics


@pytest.mark.slow
@pytest.mark.parametrize("yaml_name", MODELS)
def test_one2many_default_has_nms_and_matches_torch(checkpoints, tmp_path, yaml_name, image_folder):
    path = checkpoints[yaml_name]
    adapter = load_adapter(path)
    assert adapter.head == "one2many" and not adapter.end2end
    result = export_onnx(path, tmp_path / "m.onnx", imgsz=IMGSZ)
    assert result.nms_op == "EfficientNMS_TRT"
    x = _images(image_folder, 1)
    with OrtRunner(adapter.to_raw_onnx(IMGSZ).SerializeToString(), name="raw") as runner:
        raw = runner.infer({"images": x})["output0"]
    with torch.no_grad():
        ref = adapter.torch_model()(torch.from_numpy(x))
    ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
    assert float(np.abs(raw - ref).max()) <= 1e-4 * float(np.abs(ref).max())


def test_topk_select_twin_matches_the_graph(checkpoints, tmp_path, image_folder):
    """The numpy twin (used for the torch side of alignment) equals the ONNX selection, per class and agnostic."""
    path = checkpoints["yolo26n.yaml"]
    x = _images(image_folder, 1)
    adapter = load_adapter(path, head="one2one")
    with torch.no_grad():
        raw = adapter.torch_model()(torch.from_numpy(x)).numpy()[0]
    from trtalign.export.graph_nms import decode_raw_output

    boxes, scores = decode_raw_output(raw[None], adapter.info.num_classes, angle=False)
    for agnostic in (0, 1):
        attrs = NmsAttributes(score_threshold=0.2, max_output_boxes=50, class_agnostic=agnostic)
        out = tmp_path / f"a{agnostic}.onnx"
        export_onnx(path, out, imgsz=IMGSZ, head="one2one", score_threshold=0.2, max_det=50,
                    class_agnostic=bool(agnostic))
        with OrtRunner(str(out)) as runner:
            got = runner.infer({"images": x})
        want_boxes, want_scores, want_classes = topk_select(boxes[0], scores[0], attrs)
        n = int(got["num_detections"][0, 0])
        assert n == len(want_scores) and n > 0
        np.testing.assert_allclose(got["detection_scores"][0, :n], want_scores, rtol=0, atol=1e-5)
        assert (got["detection_classes"][0, :n] == want_classes).mean() >= 0.995
        assert float(np.abs(got["detection_scores"][0, n:]).max(initial=0)) == 0.0  # padded like the NMS node


def test_one2one_needs_an_end2end_model(tmp_path):
    with pytest.raises(InputError, match="one-to-one branch"):
        export_onnx("yolov8n.yaml", tmp_path / "x.onnx", imgsz=IMGSZ, head="one2one")
    with pytest.raises(InputError, match="valid choices"):
        load_adapter("yolo26n.yaml", head="both")


def test_cli_head_flag(tmp_path, cli):
    code, out, err = cli("export", "yolo26n.yaml", "--head", "one2one", "--imgsz", str(IMGSZ), "--out",
                         str(tmp_path / "m.onnx"))
    assert code == 0, err
    assert "NMS-free top-k" in out
    assert read_metadata(str(tmp_path / "m.onnx"))["layout"]["head"] == "one2one"
    code, out, err = cli("export", "yolov8n.yaml", "--head", "one2one", "--imgsz", str(IMGSZ), "--out",
                         str(tmp_path / "x.onnx"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "one-to-one branch" in err
