"""Engine cache keyed by content, never by file name, and the sidecar JSON that travels with every engine.

``cache_key(onnx_bytes, plan_json, trt_version, compute_capability)`` is the sha256 of all four, so a changed ONNX,
plan (precision, flags, fallback units, profile, ...), TensorRT version or GPU architecture always means a new engine.
Each entry is ``<key>.engine`` + ``<key>.json`` (the sidecar: plan, TensorRT version, GPU name and compute capability,
ONNX sha256, build seconds, the command to rebuild it), both written atomically (engine first, sidecar last: an entry
without its sidecar is incomplete and ignored). :func:`check_engine_compatible` reads an engine's sidecar and refuses
an engine built by another TensorRT version or for another GPU architecture, naming the rebuild command.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trtalign.core.errors import EngineError, InputError
from trtalign.core.io import atomic_write_bytes, atomic_write_json
from trtalign.core.logging import get_logger
from trtalign.engines.versions import TrtVersion

log = get_logger(__name__)

SIDECAR_FORMAT = "trtalign-engine"


def cache_key(onnx_bytes: bytes, plan_json: str, trt_version: str, compute_capability: str,
              plugin_libraries: "list[str | os.PathLike] | tuple" = ()) -> str:
    """sha256 over the ONNX bytes, the canonical plan JSON, the TensorRT version, the GPU compute capability and the
    bytes of the plugin libraries (a rebuilt plugin is serialized into new engines, so it must change the key)."""
    from trtalign.core.io import sha256_file

    plugins = ",".join(sha256_file(p) for p in plugin_libraries if Path(p).is_file())
    h = hashlib.sha256()
    for part in (hashlib.sha256(onnx_bytes).digest(), plan_json.encode(), str(TrtVersion.parse(trt_version)).encode(),
                 str(compute_capability).encode(), plugins.encode()):
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json") if p.suffix != ".engine" else p.with_suffix(".json")


@dataclass
class EngineSidecar:
    trt_version: str
    gpu_name: str
    compute_capability: str
    onnx_sha256: str
    plan: dict
    build_seconds: float
    cache_key: str = ""
    created: str = ""
    rebuild_command: str = ""
    format: str = SIDECAR_FORMAT

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EngineSidecar":
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise InputError(f"not a trtalign engine sidecar (expected \"format\": \"{SIDECAR_FORMAT}\")")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def read_sidecar(engine_path: str | os.PathLike) -> EngineSidecar | None:
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    try:
        return EngineSidecar.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise InputError(f"engine sidecar {path} is not valid JSON: {exc}") from None


def write_engine(engine_path: str | os.PathLike, engine: bytes, sidecar: EngineSidecar) -> Path:
    """Engine then sidecar, each atomically."""
    path = Path(engine_path)
    atomic_write_bytes(path, engine)
    atomic_write_json(sidecar_path(path), sidecar)
    return path


def check_engine_compatible(engine_path: str | os.PathLike, trt_version: str, compute_capability: str | None) -> None:
    """EngineError if the sidecar says the engine was built by another TensorRT version or for another GPU
    architecture; a missing sidecar is only a warning (the engine may come from trtexec)."""
    sc = read_sidecar(engine_path)
    if sc is None:
        log.warning("engine %s has no trtalign sidecar (%s): cannot check which TensorRT / GPU built it",
                    engine_path, sidecar_path(engine_path).name)
        return
    problems = []
    if not TrtVersion.parse(sc.trt_version).same_engine_format(TrtVersion.parse(trt_version)):
        problems.append(f"TensorRT {sc.trt_version} (this machine has {TrtVersion.parse(trt_version)})")
    if compute_capability and sc.compute_capability and str(sc.compute_capability) != str(compute_capability):
        problems.append(f"a GPU of compute capability {sc.compute_capability} ({sc.gpu_name}); this GPU is "
                        f"{compute_capability}")
    if problems:
        cmd = sc.rebuild_command or "trtalign build CONFIG"
        raise EngineError(f"engine {engine_path} was built with " + " and for ".join(problems)
                          + f"; TensorRT engines are not portable across versions or GPU architectures: rebuild it "
                            f"here with `{cmd}`")


class EngineCache:
    """``root/<key>.engine`` + ``root/<key>.json``. ``get`` returns the engine path or None; ``put`` stores one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def get(self, key: str) -> Path | None:
        path = self.path_for(key)
        if path.is_file() and sidecar_path(path).is_file():
            return path
        return None

    def put(self, key: str, engine: bytes, *, trt_version: str, gpu_name: str, compute_capability: str,
            onnx_sha256: str, plan: Any, build_seconds: float, rebuild_command: str = "") -> Path:
        plan_dict = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
        sidecar = EngineSidecar(trt_version=str(trt_version), gpu_name=gpu_name,
                                compute_capability=str(compute_capability), onnx_sha256=onnx_sha256, plan=plan_dict,
                                build_seconds=round(float(build_seconds), 3), cache_key=key,
                                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                rebuild_command=rebuild_command)
        return write_engine(self.path_for(key), engine, sidecar)

    def entries(self) -> list[EngineSidecar]:
        out = []
        for p in sorted(self.root.glob("*.engine")):
            sc = read_sidecar(p)
            if sc is not None:
                out.append(sc)
        return out
