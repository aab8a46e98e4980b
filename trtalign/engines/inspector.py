"""Summarise the engine inspector's per-layer JSON: how many layers run INT8 / FP16 / FP32, and with which tactic.

``engine.create_engine_inspector().get_engine_information(LayerInformationFormat.JSON)`` with
``ProfilingVerbosity.DETAILED`` gives one object per engine layer. Two schemas exist:

* before 11.3 (8.x, 10.x, 11.0-11.2): ``{"Layers": [{"Name", "LayerType", "Inputs": [{"Name", "Dimensions",
  "Format/Datatype": "Row major linear FP32"}], "Outputs": [...], "TacticName", "TacticValue", ...}], "Bindings":
  ["images", ...]}``; with LAYER_NAMES_ONLY verbosity ``Layers`` is a list of names;
* 11.3+: ``"Bindings"`` is replaced by ``"I/O Tensors"`` (objects with ``Name``, ``IOMode``, ``DataType``, ...) and
  tensor descriptions carry ``DataType`` / ``Format`` fields instead of the combined ``Format/Datatype`` string.

A layer's precision is the data type of its first non-constant input (what TensorRT computes in; a Q/DQ-fused conv has
an Int8 input), falling back to its first output. Reformat/shuffle layers count under their type like any other.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtalign.core.errors import InputError

PRECISION_PATTERNS = [  # (regex on the datatype text, precision)
    (re.compile(r"\bint8\b|\bi8\b", re.I), "int8"),
    (re.compile(r"\bfp8\b|\bfloat8\b|\be4m3\b", re.I), "fp8"),
    (re.compile(r"\bfp16\b|\bhalf\b|\bfloat16\b", re.I), "fp16"),
    (re.compile(r"\bbf16\b|\bbfloat16\b", re.I), "bf16"),
    (re.compile(r"\bfp32\b|\bfloat\b|\bfloat32\b", re.I), "fp32"),
    (re.compile(r"\bint32\b|\bint64\b|\bbool\b|\buint8\b", re.I), "int"),
]


@dataclass(frozen=True)
class LayerSummary:
    name: str
    type: str
    precision: str
    tactic: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "precision": self.precision, "tactic": self.tactic}


@dataclass
class InspectorSummary:
    schema: str  # "pre-11.3" | "11.3+"
    layers: list = field(default_factory=list)
    io_tensors: list = field(default_factory=list)

    @property
    def counts(self) -> dict:
        c = Counter(layer.precision for layer in self.layers)
        return {k: c.get(k, 0) for k in ("int8", "fp16", "fp32", "other")} | {k: v for k, v in c.items()
                                                                           if k not in ("int8", "fp16", "fp32", "other")}

    def to_dict(self) -> dict:
        return {"schema": self.schema, "num_layers": len(self.layers), "counts": self.counts,
                "io_tensors": self.io_tensors, "layers": [layer.to_dict() for layer in self.layers]}

    def text(self) -> str:
        c = self.counts
        extra = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("int8", "fp16", "fp32", "other") and v)
        return (f"{len(self.layers)} engine layers: INT8 {c['int8']}, FP16 {c['fp16']}, FP32 {c['fp32']}, "
                f"other {c['other']}" + (f", {extra}" if extra else "") + f" (inspector schema {self.schema})")


def precision_of_text(text: str) -> str:
    for pattern, precision in PRECISION_PATTERNS:
        if pattern.search(text or ""):
            return precision
    return "other"


def _tensor_dtype_text(t: Any) -> str:
    if not isinstance(t, dict):
        return ""
    if "Format/Datatype" in t:  # pre-11.3
        return str(t["Format/Datatype"])
    return " ".join(str(t.get(k, "")) for k in ("DataType", "Datatype", "Format"))  # 11.3+


def _layer_precision(layer: dict) -> str:
    for key in ("Inputs", "Outputs"):
        for t in layer.get(key) or []:
            if isinstance(t, dict) and str(t.get("Location", "")).lower() == "constant":
                continue
            p = precision_of_text(_tensor_dtype_text(t))
            if p not in ("other", "int"):
                return p
    return "other"


def summarize_engine_information(info: str | dict) -> InspectorSummary:
    """Parse ``get_engine_information(JSON)`` output (either schema) into per-layer precisions and counts."""
    if isinstance(info, str):
        if not info.strip():
            raise InputError("empty engine inspector output: build the engine with profiling verbosity DETAILED")
        try:
            data = json.loads(info)
        except ValueError as exc:
            raise InputError(f"engine inspector output is not JSON: {exc}") from None
    else:
        data = info
    if not isinstance(data, dict) or "Layers" not in data:
        raise InputError("engine inspector JSON has no \"Layers\" field (expected the output of "
                         "get_engine_information(LayerInformationFormat.JSON))")
    schema = "11.3+" if "I/O Tensors" in data or "Bindings" not in data and _has_split_dtype(data) else "pre-11.3"
    layers = []
    for raw in data["Layers"]:
        if isinstance(raw, str):  # LAYER_NAMES_ONLY verbosity
            layers.append(LayerSummary(raw, "", "other"))
            continue
        layers.append(LayerSummary(name=str(raw.get("Name", "")), type=str(raw.get("LayerType", raw.get("Type", ""))),
                                   precision=_layer_precision(raw),
                                   tactic=str(raw.get("TacticName") or raw.get("TacticValue") or raw.get("Tactic", ""))))
    if "I/O Tensors" in data:
        io = [{"name": t.get("Name"), "mode": t.get("IOMode"), "dtype": t.get("DataType")} for t in data["I/O Tensors"]]
    else:
        io = [{"name": n} for n in data.get("Bindings", [])]
    return InspectorSummary(schema=schema, layers=layers, io_tensors=io)


def _has_split_dtype(data: dict) -> bool:
    for layer in data.get("Layers", []):
        if isinstance(layer, dict):
            for t in (layer.get("Inputs") or []) + (layer.get("Outputs") or []):
                if isinstance(t, dict) and "DataType" in t:
                    return True
    return False


#: what ``trtalign inspect`` takes, for error messages
INSPECTABLE = ("a TensorRT engine (.engine / .plan) built by `trtalign build` (next to it: its sidecar .json and "
               "the inspector's .layers.json), or an engine inspector .json")


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multi-byte character cut at the end of the sample
    return True


def check_inspectable(path: str | os.PathLike, live: bool = False) -> str:
    """What ``trtalign inspect`` was given: ``"inspector-json"`` or ``"engine"``.

    Raises InputError naming what was expected for a missing file, an ONNX model, a text file, or an engine with
    nothing to read layers from (no sidecar, no ``.layers.json``, no ``live`` inspection): before, these printed
    "no layer information" and exited 0.
    """
    from trtalign.engines.cache import sidecar_path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}; expected {INSPECTABLE}")
    if path.suffix.lower() == ".json":
        return "inspector-json"
    if path.suffix.lower() == ".onnx":
        raise InputError(f"{path} is an ONNX model, not a TensorRT engine; expected {INSPECTABLE}. Build an engine "
                         f"with `trtalign build CONFIG --onnx-int8 ...` (or look at the ONNX with `trtalign quantize` "
                         f"/ Netron)")
    layers = path.with_suffix(".layers.json")
    if sidecar_path(path).is_file() or layers.is_file():
        return "engine"  # `trtalign build` wrote it: what to show comes from its sidecar and layer JSON
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if not head:
        raise InputError(f"{path} is empty; expected {INSPECTABLE}")
    if _looks_like_text(head):
        raise InputError(f"{path} is a text file, not a TensorRT engine (a serialized engine is binary); expected "
                         f"{INSPECTABLE}")
    if not live:
        raise InputError(f"nothing to inspect in {path}: no sidecar {sidecar_path(path).name} and no {layers.name} "
                         f"next to it (both written by `trtalign build`); pass --live on a machine with TensorRT to "
                         f"read the engine itself")
    return "engine"
