"""Triton model repository export, with config.pbtxt parsed by Triton's own ModelConfig protobuf."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trtalign.core.errors import InputError, ModelError
from trtalign.serve.triton import export_triton_repository, render_config

pb = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                         reason="tritonclient[grpc] not installed (pip install 'trtalign[serve]')")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path: Path):
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def _check_nms_outputs(cfg, k: int, width: int = 4, batched: bool = True):
    outs = {o.name: o for o in cfg.output}
    assert [o.name for o in cfg.output] == ["num_detections", "detection_boxes", "detection_scores",
                                            "detection_classes"]
    lead = [] if batched else [-1]
    assert list(outs["num_detections"].dims) == [*lead, 1]
    assert list(outs["detection_boxes"].dims) == [*lead, k, width]
    assert list(outs["detection_scores"].dims) == [*lead, k]
    assert list(outs["detection_classes"].dims) == [*lead, k]
    assert outs["num_detections"].data_type == pb.TYPE_INT32
    assert outs["detection_classes"].data_type == pb.TYPE_INT32
    assert outs["detection_boxes"].data_type == pb.TYPE_FP32 and outs["detection_scores"].data_type == pb.TYPE_FP32


def test_engine_repository_with_plugin(detect_onnx, tmp_path):
    engine = tmp_path / "det.engine"
    engine.write_bytes(b"opaque TensorRT plan bytes " * 100)  # copied verbatim; Triton would deserialize it
    plugin = tmp_path / "libtrtalign_plugins.so"
    plugin.write_bytes(b"\x7fELF fake")
    res = export_triton_repository(engine, tmp_path / "repo", name="yolo_det", max_batch=8, onnx=detect_onnx,
                                   plugin=plugin)
    root = tmp_path / "repo" / "yolo_det"
    assert (root / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert (root / "plugins" / "libtrtalign_plugins.so").read_bytes() == plugin.read_bytes()
    cfg = _parse(root / "config.pbtxt")
    assert cfg.name == "yolo_det" and cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 8
    assert [(i.name, list(i.dims), i.data_type) for i in cfg.input] == [("images", [3, 160, 160], pb.TYPE_FP32)]
    _check_nms_outputs(cfg, k=50)
    assert cfg.HasField("dynamic_batching") and cfg.dynamic_batching.max_queue_delay_microseconds == 5000
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    readme = (root / "README.md").read_text()
    assert f"LD_PRELOAD={root.resolve()}/plugins/libtrtalign_plugins.so tritonserver" in readme
    assert "--backend-config=tensorrt,plugins=" in readme
    assert res.to_dict()["plugin"] == "libtrtalign_plugins.so" and res.max_batch_size == 8
    assert not list(root.rglob("*.tmp"))  # atomic writes left nothing behind


def test_onnx_repository_and_cli(detect_onnx, tmp_path, cli):
    code, out, err = cli("triton-export", str(detect_onnx), "--repo", str(tmp_path / "repo"), "--max-batch", "4",
                         "--json", str(tmp_path / "r.json"))
    assert code == 0, err
    name = detect_onnx.stem
    cfg = _parse(tmp_path / "repo" / name / "config.pbtxt")
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 4
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    _check_nms_outputs(cfg, k=50)
    assert (tmp_path / "repo" / name / "1" / "model.onnx").read_bytes() == detect_onnx.read_bytes()
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["max_batch_size"] == 4 and result["warnings"]
    code, out, err = cli("triton-export", str(detect_onnx), "--repo", str(tmp_path / "repo"))
    assert code == 2 and "already exists" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_fixed_batch_model_gets_max_batch_size_0(tmp_path):
    from trtalign.export.onnx_export import export_onnx

    onnx_path = tmp_path / "fixed.onnx"
    export_onnx("yolov8n.yaml", onnx_path, imgsz=96, batch=1, max_det=20)
    res = export_triton_repository(onnx_path, tmp_path / "repo", max_batch=8)
    cfg = _parse(Path(res.config_path))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, 3, 96, 96]
    assert list(cfg.output[1].dims) == [1, 20, 4]
    assert any("fixed batch" in w for w in res.warnings)


def test_refusals(detect_onnx, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    plain = tmp_path / "plain.onnx"
    node = helper.make_node("Relu", ["images"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(graph), plain)
    with pytest.raises(ModelError, match="four NMS outputs"):
        export_triton_repository(plain, tmp_path / "repo")
    engine = tmp_path / "x.plan"
    engine.write_bytes(b"plan")
    with pytest.raises(InputError, match="--onnx"):
        export_triton_repository(engine, tmp_path / "repo")
    other = tmp_path / "r.json"
    other.write_text("{}")
    with pytest.raises(InputError, match="expected a TensorRT engine"):
        export_triton_repository(other, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()  # nothing half-written


def test_engine_sidecar_must_match_onnx_and_profile(detect_onnx, tmp_path):
    from trtalign.core.errors import ConfigError
    from trtalign.core.io import sha256_file
    from trtalign.engines.cache import EngineSidecar, write_engine

    sha = sha256_file(detect_onnx)
    plan = {"precision": "fp16", "onnx_sha256": sha,
            "profile": {"input_name": "images", "min": [1, 3, 160, 160], "opt": [2, 3, 160, 160],
                        "max": [4, 3, 160, 160]}}
    engine = write_engine(tmp_path / "det.fp16.engine", b"plan bytes",
                          EngineSidecar("10.3.0", "Orin", "8.7", sha, plan, 12.0))
    with pytest.raises(ConfigError, match="optimisation profile"):
        export_triton_repository(engine, tmp_path / "repo", max_batch=8, onnx=detect_onnx)
    res = export_triton_repository(engine, tmp_path / "repo", max_batch=4, onnx=detect_onnx)
    assert _parse(Path(res.config_path)).max_batch_size == 4
    import onnx

    model = onnx.load(str(detect_onnx))
    model.doc_string = "another build"  # same graph, different file
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    with pytest.raises(ConfigError, match="built from an ONNX"):
        export_triton_repository(engine, tmp_path / "repo2", max_batch=4, onnx=other)


def test_rotated_model_has_5_column_boxes_and_asks_for_the_plugin(tmp_path):
    from trtalign.export.onnx_export import export_onnx

    onnx_path = tmp_path / "obb.onnx"
    export_onnx("yolov8n-obb.yaml", onnx_path, imgsz=96, dynamic_batch=4, max_det=30)
    engine = tmp_path / "obb.engine"
    engine.write_bytes(b"plan")
    res = export_triton_repository(engine, tmp_path / "repo", max_batch=4, onnx=onnx_path)
    cfg = _parse(Path(res.config_path))
    _check_nms_outputs(cfg, k=30, width=5)
    assert any("EfficientRotatedNMS_TRT" in w and "--plugin" in w for w in res.warnings)


def test_render_config_rejected_by_triton_parser_when_broken():
    from trtalign.serve.triton import TensorSpec

    text = render_config("m", "tensorrt_plan", [TensorSpec("images", "TYPE_FP32", (-1, 3, 64, 64))],
                         [TensorSpec("num_detections", "TYPE_INT32", (-1, 1))], 4)
    assert _parse_text(text).max_batch_size == 4
    with pytest.raises(text_format.ParseError):
        _parse_text(text.replace("TYPE_FP32", "TYPE_FLOAT32"))


def _parse_text(text: str):
    return text_format.Parse(text, pb.ModelConfig())
