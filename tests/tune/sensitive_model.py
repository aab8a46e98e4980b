"""A tiny YOLO-style detector built with onnx.helper in which exactly one unit is INT8-sensitive, and a dataset it
can be scored on.

Graph (imgsz 32, 2 classes, 64 anchors of stride 4)::

    images -> conv0 (3->8, s2) -> Relu -> conv1 (8->8) -> Relu -> conv2a (8->4, s2) --------------\\
                                                            \\-> MaxPool(2) ---------------------- Concat -> head (12->6)
    head -> Reshape [1, 6, 64] -> xy = (2*sigmoid - 0.5 + grid) * 4, wh = 4 + 12*sigmoid, scores = sigmoid -> output0

conv0's output channel 0 is a constant ~200 (bias 200, zero weights) and conv1 ignores it (zero weights on that
channel): per-tensor INT8 on conv1's input takes its scale from the outlier (amax 200 -> step 1.6) and wipes out the
O(1) channels that carry the signal. Every other unit quantizes harmlessly. ``model.conv1`` is the sensitive unit.

Ground truth = the FP32 model's own detections above a score threshold, so the FP32 mAP is (close to) 1 and INT8
damage shows directly in mAP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SENSITIVE = "model.conv1"
IMGSZ = 32
NAMES = ["a", "b"]


def _decode_nodes() -> list:
    """The head's box decode (sigmoid xy / wh to pixels on the 8x8 grid), shared by both test models."""
    from onnx import helper

    return [
        helper.make_node("Sigmoid", ["txy"], ["sxy"], "/model/head/Sigmoid_xy"),
        helper.make_node("Mul", ["sxy", "two"], ["sxy2"], "/model/head/Mul_xy"),
        helper.make_node("Sub", ["sxy2", "half"], ["sxy3"], "/model/head/Sub_xy"),
        helper.make_node("Add", ["sxy3", "grid"], ["gxy"], "/model/head/Add_grid"),
        helper.make_node("Mul", ["gxy", "four"], ["xy"], "/model/head/Mul_stride"),
        helper.make_node("Sigmoid", ["twh"], ["swh"], "/model/head/Sigmoid_wh"),
        helper.make_node("Mul", ["swh", "twelve"], ["swh2"], "/model/head/Mul_wh"),
        helper.make_node("Add", ["swh2", "four"], ["wh_"], "/model/head/Add_wh"),
    ]


def _save(nodes: list, inits: list, name: str, path: Path) -> Path:
    """images [1, 3, IMGSZ, IMGSZ] -> output0 [1, 6, 64], checked and written to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("images", TensorProto.FLOAT,
                                                                          [1, 3, IMGSZ, IMGSZ])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_raw_onnx(path: Path, seed: int = 0) -> Path:
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)

    def he(shape):
        return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape).astype(np.float32)

    w0 = he((8, 3, 3, 3))
    w0[0] = 0.0
    b0 = rng.normal(0, 0.1, 8).astype(np.float32)
    b0[0] = 200.0
    w1 = he((8, 8, 3, 3))
    w1[:, 0] = 0.0
    w2 = he((4, 8, 3, 3))
    wh = (he((6, 12, 1, 1)) * 20.0).astype(np.float32)
    bh = np.array([0, 0, 0, 0, -1.0, -1.0], np.float32)
    gy, gx = np.meshgrid(np.arange(8, dtype=np.float32), np.arange(8, dtype=np.float32), indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()])[None]  # [1, 2, 64]
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w0, "w0"), (b0, "b0"), (w1, "w1"), (np.zeros(8, np.float32), "b1"), (w2, "w2"),
        (np.zeros(4, np.float32), "b2"), (wh, "wh"), (bh, "bh"), (np.array([1, 6, 64], np.int64), "shape"),
        (grid, "grid"), (np.array(2.0, np.float32), "two"), (np.array(0.5, np.float32), "half"),
        (np.array(4.0, np.float32), "four"), (np.array(12.0, np.float32), "twelve"),
        (np.array([2, 2, 2], np.int64), "splits")]]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["images", "w0", "b0"], ["c0"], "/model.0/conv/Conv", strides=[2, 2], **conv),
        helper.make_node("Relu", ["c0"], ["r0"], "/model.0/act/Relu"),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], "/model/conv1/Conv", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], "/model/act1/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], "/model/conv2a/Conv", strides=[2, 2], **conv),
        helper.make_node("Relu", ["c2"], ["r2"], "/model/act2/Relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], "/model/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["r2", "p1"], ["cat"], "/model/Concat", axis=1),
        helper.make_node("Conv", ["cat", "wh", "bh"], ["h"], "/model/head/Conv", kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["h", "shape"], ["hr"], "/model/head/Reshape"),
        helper.make_node("Split", ["hr", "splits"], ["txy", "twh", "tcls"], "/model/head/Split", axis=1),
        *_decode_nodes(),
        helper.make_node("Sigmoid", ["tcls"], ["cls_prob"], "/model/head/Sigmoid_cls"),
        helper.make_node("Concat", ["xy", "wh_", "cls_prob"], ["output0"], "/model/head/Concat_out", axis=1),
    ]
    return _save(nodes, inits, "sensitive", path)


LAYOUT = {"task": "detect", "num_classes": 2, "names": NAMES, "stride": 8, "format": "yolo-channels-first"}


def export_with_nms(raw: Path, out: Path) -> Path:
    from trtalign.core.config import ModelLayout
    from trtalign.export.onnx_export import export_onnx

    export_onnx(raw, out, imgsz=IMGSZ, layout=ModelLayout(**LAYOUT), score_threshold=0.001, iou_threshold=0.7,
                max_det=100)
    return out


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = rng.integers(0, 90, size=(IMGSZ, IMGSZ, 3), dtype=np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, IMGSZ - 8)), int(rng.integers(0, IMGSZ - 8))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 12)), y + int(rng.integers(4, 12))),
                          tuple(int(c) for c in rng.integers(90, 255, 3)), -1)
        p = folder / f"{i:04d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def make_dataset(root: Path, model_nms: Path, count: int = 24, seed: int = 0, threshold: float = 0.9) -> Path:
    """images/val/*.png + annotations/instances_val.json whose boxes are the FP32 model's detections >= threshold;
    also images/train (calibration images, not labelled)."""
    from trtalign.core.preprocess import letterbox, read_image
    from trtalign.runtime.ort_runner import OrtRunner

    paths = write_images(root / "images" / "val", count, seed)
    write_images(root / "images" / "train", 16, seed + 100)
    images, anns = [], []
    with OrtRunner(model_nms) as runner:
        for i, p in enumerate(paths):
            x, _ = letterbox(read_image(p), IMGSZ)
            out = runner.infer({"images": x})
            n = int(out["num_detections"][0, 0])
            images.append({"id": i + 1, "file_name": p.name, "width": IMGSZ, "height": IMGSZ})
            for b, s, c in zip(out["detection_boxes"][0, :n], out["detection_scores"][0, :n],
                               out["detection_classes"][0, :n]):
                if s >= threshold:
                    x1, y1, x2, y2 = (float(v) for v in b)
                    anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(NAMES)]}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    return root


def make_setup(folder: Path, count: int = 24) -> dict:
    """Raw ONNX, exported ONNX with NMS, dataset and a pipeline config YAML using them."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = build_raw_onnx(folder / "tiny_raw.onnx")
    nms = export_with_nms(raw, folder / "tiny.onnx")
    data = make_dataset(folder / "data", nms, count)
    config = folder / "config.yaml"
    config.write_text(
        f"model: {nms}\nimgsz: {IMGSZ}\n"
        f"calibration:\n  images: {data / 'images' / 'train'}\n  num: 16\n  method: minmax\n"
        f"data:\n  val: {data}\n"
        f"fallback:\n  subset: 8\n  max_evals: 8\n"
        f"outputs:\n  dir: {folder / 'out'}\n")
    return {"raw": raw, "onnx": nms, "data": data, "config": config}


# ------------------------------------------------------------------------------------ two branches: score and box
SCORE_SENSITIVE = "model.cls_mid"
BOX_SENSITIVE = "model.box_mid"


def build_two_branch_raw_onnx(path: Path, seed: int = 1, outliers: bool = True) -> Path:
    """A detector with separate class-score and box branches, each with one INT8-sensitive unit (imgsz 32, 2 classes,
    64 anchors)::

        images -> conv0 (3->8, s2) -> conv1 (8->8, s2) -+-> cls_pre -> Relu -> cls_mid -> Relu -> cls_head
                                                         +-> box_pre -> Relu -> box_mid -> Relu -> box_head
        box_head [4, 64] -> xy, wh (pixels) ; cls_head [2, 64] -> sigmoid -> Concat -> output0 [1, 6, 64]

    ``cls_pre`` and ``box_pre`` output a constant ~200 on channel 0 that ``cls_mid`` / ``box_mid`` ignore: per-tensor
    INT8 on their input wipes out the O(1) channels, so ``model.cls_mid`` damages only the class scores and
    ``model.box_mid`` only the boxes. Boxes are in pixels (tens) and scores in [0, 1], so whole-tensor SQNR hears the
    box branch and hardly the score branch. ``outliers=False``: the same model without the outlier channels (every
    unit quantizes harmlessly)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)

    def he(shape, gain=1.0):
        return (gain * rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)).astype(np.float32)

    w = {"w0": he((8, 3, 3, 3)), "w1": he((8, 8, 3, 3))}
    for br in ("cls", "box"):
        pre = he((8, 8, 3, 3))
        pre[0] = 0.0
        mid = he((8, 8, 3, 3))
        mid[:, 0] = 0.0
        w[f"{br}_pre"], w[f"{br}_mid"] = pre, mid
        bpre = rng.normal(0, 0.1, 8).astype(np.float32)
        bpre[0] = 200.0 if outliers else bpre[0]
        w[f"{br}_pre_b"] = bpre
    w["cls_head"] = he((2, 8, 1, 1), 6.0)
    w["box_head"] = he((4, 8, 1, 1), 3.0)
    gy, gx = np.meshgrid(np.arange(8, dtype=np.float32), np.arange(8, dtype=np.float32), indexing="ij")
    consts = {"shape_box": np.array([1, 4, 64], np.int64), "shape_cls": np.array([1, 2, 64], np.int64),
              "grid": np.stack([gx.ravel(), gy.ravel()])[None], "two": np.array(2.0, np.float32),
              "half": np.array(0.5, np.float32), "four": np.array(4.0, np.float32),
              "twelve": np.array(12.0, np.float32), "splits": np.array([2, 2], np.int64),
              "zeros8": np.zeros(8, np.float32), "cls_b": np.array([-1.0, -1.0], np.float32),
              "box_b": np.zeros(4, np.float32)}
    inits = [numpy_helper.from_array(a, n) for n, a in {**w, **consts}.items()]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["images", "w0", "zeros8"], ["c0"], "/model.0/conv/Conv", strides=[2, 2], **conv),
        helper.make_node("Relu", ["c0"], ["r0"], "/model.0/act/Relu"),
        helper.make_node("Conv", ["r0", "w1", "zeros8"], ["c1"], "/model/conv1/Conv", strides=[2, 2], **conv),
        helper.make_node("Relu", ["c1"], ["r1"], "/model/act1/Relu"),
    ]
    for br in ("cls", "box"):
        nodes += [
            helper.make_node("Conv", ["r1", f"{br}_pre", f"{br}_pre_b"], [f"{br}_c0"], f"/model/{br}_pre/Conv",
                             **conv),
            helper.make_node("Relu", [f"{br}_c0"], [f"{br}_r0"], f"/model/{br}_pre/Relu"),
            helper.make_node("Conv", [f"{br}_r0", f"{br}_mid", "zeros8"], [f"{br}_c1"], f"/model/{br}_mid/Conv",
                             **conv),
            helper.make_node("Relu", [f"{br}_c1"], [f"{br}_r1"], f"/model/{br}_mid/Relu"),
            helper.make_node("Conv", [f"{br}_r1", f"{br}_head", f"{br}_b"], [f"{br}_h"], f"/model/{br}_head/Conv",
                             kernel_shape=[1, 1]),
            helper.make_node("Reshape", [f"{br}_h", f"shape_{br}"], [f"{br}_hr"], f"/model/{br}_head/Reshape"),
        ]
    nodes += [
        helper.make_node("Split", ["box_hr", "splits"], ["txy", "twh"], "/model/head/Split", axis=1),
        *_decode_nodes(),
        helper.make_node("Sigmoid", ["cls_hr"], ["cls_prob"], "/model/head/Sigmoid_cls"),
        helper.make_node("Concat", ["xy", "wh_", "cls_prob"], ["output0"], "/model/head/Concat_out", axis=1),
    ]
    return _save(nodes, inits, "two_branch", path)


def make_two_branch_setup(folder: Path, count: int = 24, outliers: bool = True) -> dict:
    """Like :func:`make_setup` for the two-branch model."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = build_two_branch_raw_onnx(folder / "two_raw.onnx", outliers=outliers)
    nms = export_with_nms(raw, folder / "two.onnx")
    data = make_dataset(folder / "data", nms, count, threshold=0.5)
    return {"raw": raw, "onnx": nms, "data": data}
