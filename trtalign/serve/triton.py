"""An engine (or ONNX) with in-graph NMS -> a Triton Inference Server model repository.

Layout written (every file atomically)::

    REPO/NAME/config.pbtxt            platform, max_batch_size, input, the four NMS outputs, dynamic_batching
    REPO/NAME/1/model.plan            the TensorRT engine (or 1/model.onnx for an ONNX model)
    REPO/NAME/plugins/<lib>.so        the plugin library, when one is given (EfficientRotatedNMS_TRT for OBB models)
    REPO/NAME/README.md               how to start tritonserver, including the LD_PRELOAD / plugins note

Shapes come from the ONNX graph (for an engine: the ``--onnx`` it was built from, checked against the engine's sidecar
JSON from ``trtalign build``: same ONNX sha256, a batch profile that reaches ``--max-batch``). Triton's
``dims`` leave out the batch dimension when ``max_batch_size > 0``; a fixed-batch model gets ``max_batch_size: 0``
(Triton cannot batch it) and a warning.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtalign.core.errors import ConfigError, DependencyError, InputError, ModelError
from trtalign.core.io import atomic_path, atomic_write_text
from trtalign.core.logging import get_logger
from trtalign.serve.predictor import ENGINE_SUFFIXES, NMS_OUTPUTS

log = get_logger(__name__)

ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64", 2: "TYPE_UINT8", 3: "TYPE_INT8",
                  9: "TYPE_BOOL", 11: "TYPE_FP64"}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton TYPE_*
    shape: tuple  # full shape including the batch dim; ints, or -1 for dynamic

    def to_dict(self) -> dict:
        return {"name": self.name, "data_type": self.data_type, "shape": list(self.shape)}


@dataclass
class TritonExportResult:
    repo: str
    name: str
    platform: str
    model_file: str
    config_path: str
    max_batch_size: int
    inputs: list
    outputs: list
    plugin: str | None = None
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"repo": self.repo, "name": self.name, "platform": self.platform, "model_file": self.model_file,
                "config": self.config_path, "max_batch_size": self.max_batch_size,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "plugin": self.plugin, "warnings": list(self.warnings)}

    def summary(self) -> str:
        lines = [f"Triton model {self.name!r} written to {self.repo}/{self.name} ({self.platform}, "
                 f"max_batch_size {self.max_batch_size})"]
        lines.append(f"  start: {start_command(self.repo, self.name, self.plugin)}")
        return "\n".join(lines)


def tensor_specs_from_onnx(path: str | os.PathLike) -> tuple[list[TensorSpec], list[TensorSpec], str | None]:
    """(inputs, outputs, NMS op type or None) of an ONNX file, read without loading weights."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"cannot read ONNX {path}: {exc}") from exc
    init = {i.name for i in model.graph.initializer}

    def spec(vi: Any) -> TensorSpec:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        if tt.elem_type not in ONNX_TO_TRITON:
            raise ModelError(f"{path}: tensor {vi.name!r} has ONNX element type {tt.elem_type}, not mappable to Triton")
        return TensorSpec(vi.name, ONNX_TO_TRITON[tt.elem_type], dims)

    inputs = [spec(v) for v in model.graph.input if v.name not in init]
    outputs = [spec(v) for v in model.graph.output]
    nms = next((n.op_type for n in model.graph.node if n.op_type in ("EfficientNMS_TRT", "EfficientRotatedNMS_TRT")),
               None)
    return inputs, outputs, nms


def check_engine_against_onnx(engine: Path, onnx_path: str | os.PathLike, max_batch: int) -> dict:
    """The engine's sidecar (``trtalign build``) must name this ONNX (sha256) and a batch profile reaching
    ``max_batch``; returns the facts found (empty when the engine has no sidecar)."""
    from trtalign.core.io import sha256_file
    from trtalign.engines.cache import read_sidecar

    sidecar = read_sidecar(engine)
    if sidecar is None:
        log.warning("%s has no sidecar JSON: cannot check that %s is the ONNX it was built from", engine.name,
                    Path(onnx_path).name)
        return {}
    facts: dict = {"trt_version": sidecar.trt_version, "gpu": sidecar.gpu_name,
                   "compute_capability": sidecar.compute_capability}
    plan = sidecar.plan if isinstance(sidecar.plan, dict) else {}
    known = {h for h in (sidecar.onnx_sha256, plan.get("onnx_sha256")) if h}
    if known and sha256_file(onnx_path) not in known:
        raise ConfigError(f"{engine.name} was built from an ONNX with sha256 {sorted(known)[0][:12]}..., not from "
                          f"{Path(onnx_path).name}; pass the ONNX the engine was built from")
    profile = plan.get("profile")
    if profile and profile.get("max"):
        facts["profile_max_batch"] = int(profile["max"][0])
        if max_batch > facts["profile_max_batch"]:
            raise ConfigError(f"--max-batch {max_batch} exceeds the engine's optimisation profile (max batch "
                              f"{facts['profile_max_batch']}); use --max-batch {facts['profile_max_batch']} or rebuild")
    return facts


def _dims(shape: tuple) -> str:
    return "[ " + ", ".join(str(int(d)) for d in shape) + " ]"


def render_config(name: str, platform: str, inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch: int,
                  max_queue_delay_us: int = 5000, instance_kind: str = "KIND_GPU") -> str:
    """The text of config.pbtxt (protobuf text format of Triton's ``inference.ModelConfig``)."""
    batched = max_batch > 0
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch}", "input ["]

    def block(t: TensorSpec, last: bool) -> list[str]:
        dims = t.shape[1:] if batched else t.shape
        return ["  {", f'    name: "{t.name}"', f"    data_type: {t.data_type}", f"    dims: {_dims(dims)}",
                "  }" + ("" if last else ",")]

    for i, t in enumerate(inputs):
        lines += block(t, i == len(inputs) - 1)
    lines += ["]", "output ["]
    for i, t in enumerate(outputs):
        lines += block(t, i == len(outputs) - 1)
    lines.append("]")
    if batched:
        preferred = sorted({b for b in (max_batch // 2, max_batch) if b >= 1})
        lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(tuple(preferred))}",
                  f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}", "}"]
    lines += ["instance_group [", "  {", "    count: 1", f"    kind: {instance_kind}", "  }", "]"]
    if platform == "onnxruntime_onnx":  # the NMS node is a TensorRT plugin: only the TensorRT EP can run it
        lines += ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator: [",
                  "      { name: \"tensorrt\" }", "    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def parse_config(text: str) -> Any:
    """Parse config.pbtxt with Triton's own ModelConfig protobuf (needs ``tritonclient[grpc]``)."""
    from trtalign.core.lazy import require

    pb = require("tritonclient.grpc.model_config_pb2", extra="serve", purpose="validating a Triton config.pbtxt")
    text_format = require("google.protobuf.text_format", extra="serve")
    return text_format.Parse(text, pb.ModelConfig())


def start_command(repo: str, name: str, plugin: str | None) -> str:
    cmd = f"tritonserver --model-repository={Path(repo).resolve()}"
    if plugin:
        lib = Path(repo).resolve() / name / "plugins" / Path(plugin).name
        return f"LD_PRELOAD={lib} {cmd}"
    return cmd


def _readme(result: TritonExportResult) -> str:
    lib = f"{result.repo}/{result.name}/plugins/{Path(result.plugin).name}" if result.plugin else None
    lines = [f"# Triton model `{result.name}` (written by `trtalign triton-export`)", "",
             f"Platform `{result.platform}`, `max_batch_size: {result.max_batch_size}`, dynamic batching "
             f"{'on' if result.max_batch_size > 0 else 'off (fixed-batch model)'}.", "",
             "Outputs: `num_detections` [1], `detection_boxes` [K, 4|5], `detection_scores` [K], "
             "`detection_classes` [K] (K = max_output_boxes); boxes are in letterboxed input pixels, so clients "
             "letterbox like `trtalign.core.preprocess.letterbox` and scale back with `scale_boxes`.", "",
             "## Start", "", "```sh", start_command(result.repo, result.name, result.plugin), "```", ""]
    if lib:
        lines += ["The model uses a custom TensorRT plugin. The library must be loaded before the engine is "
                  "deserialized, either with `LD_PRELOAD` (above) or with the TensorRT backend option:", "",
                  "```sh", f"tritonserver --model-repository={result.repo} "
                  f"--backend-config=tensorrt,plugins=\"{lib}\"", "```", "",
                  "Build the plugin on the machine (same TensorRT version) with `trtalign plugins build`.", ""]
    else:
        lines += ["`EfficientNMS_TRT` ships in TensorRT's own `libnvinfer_plugin`, which Triton's TensorRT backend "
                  "loads; no extra library is needed.", ""]
    lines += ["An engine only runs on the TensorRT version and GPU it was built for: build it with the TensorRT "
              "that matches the Triton container.", ""]
    return "\n".join(lines)


def export_triton_repository(model: str | os.PathLike, repo: str | os.PathLike, name: str | None = None,
                             max_batch: int = 8, onnx: str | os.PathLike | None = None,
                             plugin: str | os.PathLike | None = None, max_queue_delay_us: int = 5000,
                             overwrite: bool = False) -> TritonExportResult:
    """Write a Triton model repository entry for ``model`` (an engine or an ONNX with in-graph NMS)."""
    model = Path(model)
    if not model.is_file():
        raise InputError(f"model not found: {model}")
    if max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {max_batch}")
    suffix = model.suffix.lower()
    is_engine = suffix in ENGINE_SUFFIXES
    if not is_engine and suffix != ".onnx":
        raise InputError(f"{model}: expected a TensorRT engine ({', '.join(ENGINE_SUFFIXES)}) or an .onnx file")
    name = name or model.stem
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"--name {name!r}: use letters, digits, '_', '-' or '.'")
    warnings: list[str] = []
    nms = None
    if is_engine:
        if onnx is None:
            raise InputError(f"{model}: Triton needs the engine's tensor names and shapes; pass --onnx MODEL.onnx "
                             f"(the ONNX the engine was built from)")
        if not Path(onnx).is_file():
            raise InputError(f"--onnx {onnx}: file not found")
        inputs, outputs, nms = tensor_specs_from_onnx(onnx)
        check_engine_against_onnx(model, onnx, max_batch)
        platform, model_file = "tensorrt_plan", "model.plan"
    else:
        if onnx is not None:
            raise ConfigError("--onnx is only for engines (the model is already an ONNX file)")
        inputs, outputs, nms = tensor_specs_from_onnx(model)
        platform, model_file = "onnxruntime_onnx", "model.onnx"
        warnings.append("ONNX model: the NMS node is a TensorRT plugin, so Triton's onnxruntime backend needs its "
                        "TensorRT execution provider (set in config.pbtxt); a TensorRT engine (model.plan) is the "
                        "supported route")
    out_names = [t.name for t in outputs]
    if set(out_names) != set(NMS_OUTPUTS):
        raise ModelError(f"{model}: expected exactly the four NMS outputs {list(NMS_OUTPUTS)}, got {out_names}; "
                         f"export with in-graph NMS")
    outputs = sorted(outputs, key=lambda t: NMS_OUTPUTS.index(t.name))
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or any(d < 1 for d in inputs[0].shape[1:]):
        raise ModelError(f"{model}: expected one input [B, 3, H, W] with fixed H and W, got "
                         f"{[t.to_dict() for t in inputs]}")
    batch_dim = inputs[0].shape[0]
    if batch_dim >= 1:  # fixed batch: Triton cannot batch it
        warnings.append(f"the model has a fixed batch of {batch_dim}: max_batch_size 0 and no dynamic batching; "
                        f"export/build with a dynamic batch (max >= {max_batch}) to let Triton batch requests")
        max_batch_size = 0
    else:
        max_batch_size = max_batch
    for t in outputs:
        if any(d < 0 for d in t.shape[1:]):
            raise ModelError(f"{model}: output {t.name} has a dynamic non-batch dimension {list(t.shape)}")
    if nms == "EfficientRotatedNMS_TRT" and plugin is None and is_engine:
        warnings.append("the engine uses EfficientRotatedNMS_TRT (trtalign's plugin): pass --plugin "
                        "libtrtalign_plugins.so (from `trtalign plugins build`) so Triton can load it")
    if plugin is not None and not Path(plugin).is_file():
        raise InputError(f"plugin library not found: {plugin}")

    target = Path(repo) / name
    if target.exists() and not overwrite and any(target.iterdir()):
        raise InputError(f"{target} already exists and is not empty; choose another --name or pass --overwrite")
    text = render_config(name, platform, inputs, outputs, max_batch_size, max_queue_delay_us)
    try:  # validate with Triton's own protobuf when available; never write a config it would reject
        parse_config(text)
    except DependencyError:
        log.debug("tritonclient not installed: config.pbtxt not validated")
    except Exception as exc:  # google.protobuf.text_format.ParseError
        raise ModelError(f"generated config.pbtxt does not parse as Triton's ModelConfig: {exc}") from exc

    with atomic_path(target / "1" / model_file) as tmp:
        shutil.copyfile(model, tmp)
    plugin_rel = None
    if plugin is not None:
        with atomic_path(target / "plugins" / Path(plugin).name) as tmp:
            shutil.copyfile(plugin, tmp)
        plugin_rel = str(Path(plugin).name)
    config_path = atomic_write_text(target / "config.pbtxt", text)
    result = TritonExportResult(repo=str(repo), name=name, platform=platform, model_file=str(target / "1" / model_file),
                                config_path=str(config_path), max_batch_size=max_batch_size, inputs=inputs,
                                outputs=outputs, plugin=plugin_rel, warnings=warnings)
    atomic_write_text(target / "README.md", _readme(result))
    for w in warnings:
        log.warning("%s", w)
    return result
