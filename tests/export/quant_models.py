"""Models for the INT8 / FP16 export tests: a YOLO ONNX from ultralytics yaml (exported once per session) with
He-scaled random weights, so activations, boxes and scores carry signal; and tiny hand-built graphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_EXPORTS: dict = {}


def he_rescaled(src: Path, dst: Path, seed: int = 0) -> Path:
    """Replace every conv weight (but the DFL's) by He-normal values and biases by N(0, 0.1): activations stay O(1)
    through the network and the class scores spread around 0.5 instead of sitting at ~1e-4."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    inits = {i.name: i for i in model.graph.initializer}
    done: set = set()
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.shape[0] == 1:  # the DFL conv (arange weights) stays as exported
            continue
        new = rng.normal(0.0, np.sqrt(2.0 / np.prod(w.shape[1:])), w.shape).astype(np.float32)
        inits[node.input[1]].CopyFrom(numpy_helper.from_array(new, node.input[1]))
        if len(node.input) > 2 and node.input[2] in inits and node.input[2] not in done:
            b = numpy_helper.to_array(inits[node.input[2]])
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(rng.normal(0, 0.1, b.shape).astype(np.float32),
                                                                  node.input[2]))
            done.add(node.input[2])
    onnx.save(model, str(dst))
    return dst


def yolo_onnx(folder: Path, yaml_name: str = "yolov8n.yaml", imgsz: int = 160) -> Path:
    """Raw ultralytics ONNX (``output0``) of a random-init model, He-rescaled; exported once per test session."""
    key = (yaml_name, imgsz)
    if key not in _EXPORTS or not _EXPORTS[key].exists():
        import contextlib
        import shutil

        from ultralytics import YOLO

        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(folder):  # ultralytics writes the export into the working directory
            exported = Path(YOLO(yaml_name).export(format="onnx", imgsz=imgsz, opset=17, verbose=False)).resolve()
        raw = folder / f"{Path(yaml_name).stem}_{imgsz}_raw.onnx"
        shutil.move(str(exported), raw)
        _EXPORTS[key] = he_rescaled(raw, folder / f"{Path(yaml_name).stem}_{imgsz}.onnx")
    return _EXPORTS[key]


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = (120, 160) if i % 2 else (170, 130)
        img = rng.integers(0, 80, size=(h, w, 3), dtype=np.uint8)
        for _ in range(4):
            x, y = int(rng.integers(0, w - 30)), int(rng.integers(0, h - 30))
            cv2.rectangle(img, (x, y), (x + 25, y + 28), tuple(int(c) for c in rng.integers(80, 255, 3)), -1)
        cv2.imwrite(str(folder / f"im_{i:03d}.jpg"), img)
    return folder


def small_graph(path: Path, opset: int = 17, nan: bool = False) -> Path:
    """x[1,3,16,16] -> (Sqrt(x - 0.5) when ``nan``) -> Conv(4) -> Relu -> ConvTranspose(2) -> Flatten -> Gemm(5,
    transB) -> Sigmoid -> y. A Conv, a ConvTranspose and a Gemm head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w_conv"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 2, 2, 2)).astype(np.float32), "w_convt"),
             numpy_helper.from_array(rng.normal(0, 0.05, (5, 2 * 32 * 32)).astype(np.float32), "w_gemm"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = []
    src = "x"
    if nan:
        nodes += [helper.make_node("Sub", ["x", "half"], ["xs"], name="sub"),
                  helper.make_node("Sqrt", ["xs"], ["xq"], name="sqrt")]
        src = "xq"
    nodes += [helper.make_node("Conv", [src, "w_conv"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
              helper.make_node("ConvTranspose", ["r", "w_convt"], ["t"], name="/up/ConvTranspose", strides=[2, 2]),
              helper.make_node("Flatten", ["t"], ["f"], name="/flat/Flatten"),
              helper.make_node("Gemm", ["f", "w_gemm"], ["g"], name="/fc/Gemm", transB=1),
              helper.make_node("Sigmoid", ["g"], ["y"], name="/out/Sigmoid")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
