"""A stand-in ``tensorrt`` module generated from a real API surface (tests/data/trt_surfaces/<version>.json).

The surfaces were extracted from the real bindings wheels by scripts/extract_trt_surface.py. The stand-in accepts
exactly what that version's bindings accept at the Python level: attribute and method names, properties (read-only
ones refuse assignment), enum members, argument counts and keyword names of every pybind11 overload, enum-typed and
class-typed parameters; anything else raises :class:`SurfaceError` naming the version. Every call and property
assignment is recorded in ``standin.calls``. Results come from a small :class:`FakeModel` (network layers, parser
errors, engine I/O) so the builder and runner code paths run end to end; nothing is computed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SURFACES = Path(__file__).resolve().parents[1] / "data" / "trt_surfaces"
VERSIONS = ("8.6.1", "10.3.0", "10.16.1", "11.4.0")


class SurfaceError(AttributeError, TypeError):
    """A use of the API that this TensorRT version does not have."""


def load_surface(version: str) -> dict:
    return json.loads((SURFACES / f"{version}.json").read_text())


def _short(type_name: str) -> str:
    return re.split(r"[.:]+", type_name.strip())[-1] if type_name else ""


@dataclass
class Call:
    target: str  # "IBuilderConfig.set_flag", "IBuilderConfig.profiling_verbosity=", "init_libnvinfer_plugins"
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


class EnumValue:
    def __init__(self, enum: str, name: str, index: int):
        self.enum, self.name, self._index = enum, name, index

    def __int__(self) -> int:  # ordinal, stand-in only: real values differ per version and are never persisted
        return self._index

    __index__ = __int__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"<{self.enum}.{self.name}>"


class EnumType:
    def __init__(self, standin: "Standin", name: str, members: list):
        self._standin, self._name = standin, name
        self.__members__ = {m: EnumValue(name, m, i) for i, m in enumerate(members)}

    def __getattr__(self, item: str) -> EnumValue:
        members = self.__dict__.get("__members__", {})
        if item in members:
            return members[item]
        raise SurfaceError(f"TensorRT {self._standin.__version__}: enum {self._name} has no member {item!r} "
                           f"(members: {sorted(members)})")


@dataclass
class FakeModel:
    """What the stand-in's TensorRT 'sees': the ONNX network and the engine built from it."""

    inputs: list = field(default_factory=lambda: [("images", (-1, 3, 64, 64))])
    layers: list = field(default_factory=list)  # (name, [output tensor names])
    parse_errors: list = field(default_factory=list)  # (desc, node index, node name)
    engine_io: list = field(default_factory=lambda: [
        ("images", "INPUT", "FLOAT", (-1, 3, 64, 64)), ("num_detections", "OUTPUT", "INT32", (-1, 1)),
        ("detection_boxes", "OUTPUT", "FLOAT", (-1, 10, 4))])
    profile: tuple = ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    engine_bytes: bytes = b"STANDIN-ENGINE"
    build_fails: bool = False
    deserialize_fails: bool = False
    inspector_json: str = '{"Layers": [], "Bindings": ["images"]}'


class Standin:
    """The module. ``Standin("10.3.0", FakeModel(...))``; ``.calls`` lists what the code under test did."""

    def __init__(self, version: str, model: FakeModel | None = None):
        self.surface = load_surface(version)
        self.__version__ = self.surface["version"]
        self.model = model or FakeModel()
        self.calls: list[Call] = []
        self.backend = None  # a FakeCudaBackend to receive execute_async_v3 outputs
        self._cache: dict = {}

    # -- module attributes
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name in cache:
            return cache[name]
        entry = self.surface["module"].get(name)
        if entry is None:
            raise SurfaceError(f"TensorRT {self.__version__} has no attribute tensorrt.{name}")
        if entry["kind"] == "enum":
            value: Any = EnumType(self, name, entry["members"])
        elif entry["kind"] == "class":
            value = _make_class(self, name)
        elif entry["kind"] == "function":
            value = _bound_function(self, name, entry["signatures"])
        else:
            raise SurfaceError(f"stand-in does not emulate tensorrt.{name} ({entry['kind']})")
        cache[name] = value
        return value

    # -- surface helpers
    def class_entry(self, cls: str) -> dict | None:
        entry = self.surface["module"].get(cls)
        return entry if entry and entry["kind"] == "class" else None

    def lookup(self, cls: str, section: str, attr: str) -> Any:
        """Find ``attr`` in ``section`` of ``cls`` or its bases."""
        seen = [cls]
        while seen:
            c = seen.pop(0)
            entry = self.class_entry(c)
            if entry is None:
                continue
            if attr in entry.get(section, {}):
                return entry[section][attr]
            seen.extend(entry.get("bases", []))
        return None

    def is_a(self, cls: str, base: str) -> bool:
        todo = [cls]
        while todo:
            c = todo.pop()
            if c == base:
                return True
            entry = self.class_entry(c)
            todo.extend(entry.get("bases", []) if entry else [])
        return False

    def record(self, target: str, args: tuple = (), kwargs: dict | None = None) -> None:
        self.calls.append(Call(target, tuple(args), dict(kwargs or {})))

    def targets(self) -> list[str]:
        return [c.target for c in self.calls]

    def called(self, target: str) -> list[Call]:
        return [c for c in self.calls if c.target == target]

    # -- argument checking
    def _value_ok(self, value: Any, type_name: str) -> bool:
        t = _short(type_name)
        entry = self.surface["module"].get(t)
        nested = None
        if entry is None and "." in type_name:  # nested enum like ILogger.Severity
            parts = type_name.split(".")
            owner = self.class_entry(parts[-2])
            nested = owner.get("enums", {}).get(parts[-1]) if owner else None
        if (entry and entry["kind"] == "enum") or nested is not None:
            return isinstance(value, EnumValue) and value.enum == t
        if isinstance(value, EnumValue):
            return t in ("int", "object", "SupportsInt") and False
        if entry and entry["kind"] == "class":
            if isinstance(value, StandinObject):
                return self.is_a(type(value)._trt_name, t)
            # pybind11 converts tuples to Dims / Permutation and arrays to Weights; other TensorRT objects must be
            # TensorRT objects (None is a null pointer)
            return value is None or t.startswith("Dims") or t in ("Weights", "Permutation")
        if t == "str":
            return isinstance(value, str)
        if t in ("int", "SupportsInt"):
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if t in ("float", "SupportsFloat"):
            return isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
        if t == "bool":
            return isinstance(value, (bool, np.bool_))
        return True

    def check_call(self, target: str, signatures: list, args: tuple, kwargs: dict, skip_self: bool) -> dict:
        """Bind args to one overload or raise SurfaceError listing the real signatures."""
        if not signatures:
            return {}
        problems = []
        for sig in signatures:
            params = [p for p in sig["params"] if "kind" not in p]
            if skip_self and params and params[0]["name"] == "self":
                params = params[1:]
            var = {p.get("kind") for p in sig["params"]}
            if "var_positional" in var:
                return {}
            bound: dict = {}
            if len(args) > len(params):
                problems.append(f"takes {len(params)} positional argument(s), got {len(args)}")
                continue
            for p, a in zip(params, args):
                bound[p["name"]] = a
            bad = [k for k in kwargs if k not in {p["name"] for p in params} or k in bound]
            if bad:
                problems.append(f"unexpected keyword(s) {bad}")
                continue
            bound.update(kwargs)
            missing = [p["name"] for p in params if p["name"] not in bound and not p.get("default")]
            if missing:
                problems.append(f"missing {missing}")
                continue
            wrong = [p["name"] for p in params if p["name"] in bound and not self._value_ok(bound[p["name"]], p["type"])]
            if wrong:
                problems.append(f"wrong type for {wrong}")
                continue
            return bound
        shown = ["(" + ", ".join(f"{p['name']}: {_short(p.get('type', ''))}" for p in s["params"] if "kind" not in p)
                 + ")" for s in signatures]
        raise SurfaceError(f"TensorRT {self.__version__}: {target}{args!r} {kwargs or ''} matches no signature "
                           f"({'; '.join(problems)}); real signatures: {' | '.join(shown)}")


def _bound_function(standin: Standin, name: str, signatures: list):
    def fn(*args: Any, **kwargs: Any) -> Any:
        standin.check_call(name, signatures, args, kwargs, skip_self=False)
        standin.record(name, args, kwargs)
        if name == "get_plugin_registry":
            return standin._cache.setdefault("_registry", _new(standin, "IPluginRegistry"))
        return True

    return fn


class StandinMeta(type):
    def __getattr__(cls, item: str) -> Any:
        standin: Standin = cls.__dict__.get("_standin") or cls._standin
        trt_name = cls._trt_name
        nested = standin.lookup(trt_name, "enums", item)
        if nested is not None:
            return EnumType(standin, item, nested)
        static = standin.lookup(trt_name, "static", item)
        if static is not None:
            return _bound_function(standin, f"{trt_name}.{item}", static["signatures"])
        raise SurfaceError(f"TensorRT {standin.__version__}: class {trt_name} has no attribute {item!r}")


class StandinObject(metaclass=StandinMeta):
    _standin: Standin
    _trt_name = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A Python subclass (our logger, our calibrator) must override TensorRT's virtuals with their real arity."""
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("_trt_generated"):
            return
        import inspect

        standin, base = cls._standin, cls._trt_name
        for attr, fn in cls.__dict__.items():
            if attr.startswith("__") or not callable(fn):
                continue
            method = standin.lookup(base, "methods", attr)
            if method is None or not method["signatures"]:
                continue
            want = {len([p for p in s["params"] if "kind" not in p]) for s in method["signatures"]}
            have = len(inspect.signature(fn).parameters)
            if have not in want:
                raise SurfaceError(f"TensorRT {standin.__version__}: {cls.__name__}.{attr} overrides {base}.{attr} "
                                   f"with {have} parameter(s) (self included); TensorRT calls it with {sorted(want)}")

    def __init__(self, *args: Any, **kwargs: Any):
        standin, name = type(self)._standin, type(self)._trt_name
        init = standin.lookup(name, "methods", "__init__")
        sigs = init["signatures"] if init else []
        if not sigs or all(any(p.get("kind") == "var_positional" for p in s["params"]) for s in sigs):
            raise SurfaceError(f"TensorRT {standin.__version__}: {name} cannot be constructed from Python")
        bound = standin.check_call(f"{name}.__init__", sigs, args, kwargs, skip_self=True)
        object.__setattr__(self, "_props", {})
        standin.record(f"{name}.__init__", args, kwargs)
        self._init_hook(bound)

    def _init_hook(self, bound: dict) -> None:
        if type(self)._trt_name == "Builder":
            type(self)._standin.__dict__["_builder_logger"] = bound.get("logger")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in ("_props",):
            raise AttributeError(attr)
        standin, name = type(self)._standin, _trt_class(self)
        method = standin.lookup(name, "methods", attr)
        if method is not None:
            def call(*args: Any, **kwargs: Any) -> Any:
                bound = standin.check_call(f"{name}.{attr}", method["signatures"], args, kwargs, skip_self=True)
                standin.record(f"{name}.{attr}", args, kwargs)
                return _behave(standin, self, name, attr, bound, method["signatures"])
            return call
        prop = standin.lookup(name, "properties", attr)
        if prop is not None:
            props = self.__dict__.setdefault("_props", {})
            if attr in props:
                return props[attr]
            return _property_default(standin, self, name, attr, prop)
        raise SurfaceError(f"TensorRT {standin.__version__}: {name} has no attribute {attr!r}")

    def __setattr__(self, attr: str, value: Any) -> None:
        standin, name = type(self)._standin, _trt_class(self)
        prop = standin.lookup(name, "properties", attr)
        if prop is None:
            if type(self).__dict__.get("_trt_generated", False) and not attr.startswith("_"):
                raise SurfaceError(f"TensorRT {standin.__version__}: {name} has no property {attr!r} to set")
            object.__setattr__(self, attr, value)  # Python subclass attributes (a calibrator's own state)
            return
        if prop["readonly"]:
            raise SurfaceError(f"TensorRT {standin.__version__}: {name}.{attr} is read-only")
        if prop.get("type") and not standin._value_ok(value, prop["type"]):
            raise SurfaceError(f"TensorRT {standin.__version__}: {name}.{attr} expects {_short(prop['type'])}, got "
                               f"{value!r}")
        standin.record(f"{name}.{attr}=", (value,))
        self.__dict__.setdefault("_props", {})[attr] = value

    def __bytes__(self) -> bytes:
        return bytes(self.__dict__.get("_props", {}).get("_bytes", b""))


def _trt_class(obj: Any) -> str:
    return type(obj)._trt_name


def _make_class(standin: Standin, name: str) -> type:
    return StandinMeta(name, (StandinObject,), {"_standin": standin, "_trt_name": name, "_trt_generated": True})


def _new(standin: Standin, cls: str, **props: Any) -> StandinObject:
    klass = getattr(standin, cls)
    obj = object.__new__(klass)
    object.__setattr__(obj, "_props", dict(props))
    return obj


def _property_default(standin: Standin, obj: Any, cls: str, attr: str, prop: dict) -> Any:
    m = standin.model
    if cls == "INetworkDefinition":
        return {"num_layers": len(m.layers), "num_inputs": len(m.inputs), "num_outputs": 1}.get(attr, 0)
    if cls == "OnnxParser" and attr == "num_errors":
        return len(m.parse_errors)
    if cls == "ICudaEngine" and attr == "num_io_tensors":
        return len(m.engine_io)
    t = _short(prop.get("type", ""))
    return {"int": 0, "bool": False, "float": 0.0, "str": ""}.get(t)


def _io(standin: Standin, name: str) -> tuple:
    for row in standin.model.engine_io:
        if row[0] == name:
            return row
    raise SurfaceError(f"stand-in engine has no tensor {name!r}")


def _behave(standin: Standin, obj: Any, cls: str, meth: str, bound: dict, sigs: list) -> Any:
    m, t = standin.model, standin
    key = f"{cls}.{meth}"
    if key == "OnnxParser.parse_from_file" or key == "OnnxParser.parse":
        return not m.parse_errors
    if key == "OnnxParser.get_error":
        desc, node, node_name = m.parse_errors[bound["index"]]
        return _new(t, "ParserError", _desc=desc, _node=node, _node_name=node_name)
    if cls == "ParserError":
        return obj._props.get(f"_{meth}")
    if key == "INetworkDefinition.get_layer":
        lname, outs = m.layers[bound["index"]]
        return _new(t, "ILayer", name=lname, num_outputs=len(outs), _outs=outs)
    if key == "INetworkDefinition.get_input":
        iname, shape = m.inputs[bound["index"]]
        return _new(t, "ITensor", name=iname, shape=shape, dtype=t.DataType.FLOAT)
    if key == "ILayer.get_output":
        return _new(t, "ITensor", name=obj._props["_outs"][bound["index"]], dtype=t.DataType.FLOAT)
    if key == "Builder.build_serialized_network":
        _drive_build(t, bound)
        return None if m.build_fails else _new(t, "IHostMemory", _bytes=m.engine_bytes)
    if key == "ITimingCache.serialize":
        return _new(t, "IHostMemory", _bytes=b"TIMING-CACHE")
    if key == "IBuilderConfig.get_timing_cache":
        return _new(t, "ITimingCache")
    if key == "Runtime.deserialize_cuda_engine":
        return None if m.deserialize_fails else _new(t, "ICudaEngine")
    if key == "ICudaEngine.get_tensor_name":
        return m.engine_io[bound["index"]][0]
    if key == "ICudaEngine.get_tensor_mode":
        return getattr(t.TensorIOMode, _io(t, bound["name"])[1])
    if key == "ICudaEngine.get_tensor_dtype":
        return getattr(t.DataType, _io(t, bound["name"])[2])
    if key == "ICudaEngine.get_tensor_shape":
        return tuple(_io(t, bound["name"])[3])
    if key == "ICudaEngine.get_tensor_profile_shape":
        return [tuple(s) for s in m.profile]
    if key == "IExecutionContext.set_input_shape":
        obj._props.setdefault("_shapes", {})[bound["name"]] = tuple(bound["shape"])
        return True
    if key == "IExecutionContext.get_tensor_shape":
        shapes = obj._props.get("_shapes", {})
        batch = next(iter(shapes.values()))[0] if shapes else -1
        return tuple(batch if d == -1 else d for d in _io(t, bound["name"])[3])
    if key == "IExecutionContext.set_tensor_address":
        obj._props.setdefault("_addr", {})[bound["name"]] = int(bound["memory"])
        return True
    if key == "IExecutionContext.execute_async_v3":
        if t.backend is not None:
            t.backend.fake_execute(obj._props.get("_addr", {}), obj._props.get("_shapes", {}), m)
        return True
    if key == "EngineInspector.get_engine_information":
        return m.inspector_json
    if key in ("IPluginRegistry.load_library",):
        return object()
    returns = sigs[0]["returns"] if sigs else ""
    r = _short(returns)
    if r in ("None", ""):
        return None
    if r == "bool":
        return True
    if r in ("int", "float"):
        return 0
    entry = t.class_entry(r) or t.class_entry(r[1:] if r.startswith("I") else r)
    if entry is not None:
        return _new(t, r if t.class_entry(r) else r[1:])
    return None


def _drive_build(t: Standin, bound: dict) -> None:
    """Do to the Python objects what TensorRT's builder does: log through the builder's logger and, with a
    calibrator, ask for the batch size and cache, pull batches until None, then hand it the new cache."""
    builder_logger = t.__dict__.get("_builder_logger")
    if builder_logger is not None:
        builder_logger.log(t.ILogger.Severity.INFO, "stand-in: building")
    calib = bound["config"].__dict__.get("_props", {}).get("int8_calibrator")
    if calib is None:
        return
    t.record("<tensorrt>.calibrate")
    batch_size = calib.get_batch_size()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SurfaceError(f"calibrator.get_batch_size() returned {batch_size!r}, TensorRT needs an int >= 1")
    if calib.read_calibration_cache() is None:
        names = [name for name, _ in t.model.inputs]
        while True:
            ptrs = calib.get_batch(names)
            if ptrs is None:
                break
            if len(ptrs) != len(names) or not all(isinstance(p, int) and p for p in ptrs):
                raise SurfaceError(f"calibrator.get_batch({names}) returned {ptrs!r}: one device pointer per input")
        v = [int(x) for x in t.__version__.split(".")[:3]]
        code = v[0] * 1000 + v[1] * 100 + v[2] if v[0] < 10 else v[0] * 10000 + v[1] * 100 + v[2]
        algo = "MinMaxCalibration" if "MinMax" in type(calib).__mro__[1].__name__ else "EntropyCalibration2"
        calib.write_calibration_cache(memoryview(f"TRT-{code}-{algo}\nimages: 3c010204\n".encode()))


class FakeCudaBackend:
    """Host-memory CUDA backend for the runner: 'device' pointers index numpy buffers; records every operation."""

    name = "fake"

    def __init__(self, compute_capability: str = "8.6"):
        self.mem: dict[int, np.ndarray] = {}
        self.ops: list[str] = []
        self._next = 0x1000
        self.cc = compute_capability
        self._capturing: list | None = None

    def open(self) -> None:
        self.ops.append("open")

    def close(self) -> None:
        self.ops.append("close")

    def alloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += max(int(nbytes), 1) + 256
        self.mem[ptr] = np.zeros(max(int(nbytes), 1), np.uint8)
        self.ops.append("alloc")
        return ptr

    def free(self, ptr: int) -> None:
        self.mem.pop(ptr)
        self.ops.append("free")

    def pinned_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        self.ops.append("pinned")
        return np.empty(shape, dtype)

    def create_stream(self) -> Any:
        return "stream0"

    def stream_handle(self, stream: Any) -> int:
        return 42

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.mem[dst][: src.nbytes] = np.frombuffer(src.tobytes(), np.uint8)
        self.ops.append("htod")

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        dst.reshape(-1).view(np.uint8)[:] = self.mem[src][: dst.nbytes]
        self.ops.append("dtoh")

    def synchronize(self, stream: Any) -> None:
        self.ops.append("sync")

    def begin_capture(self, stream: Any) -> None:
        self.ops.append("begin_capture")

    def end_capture(self, stream: Any) -> Any:
        self.ops.append("end_capture")
        return "graph"

    def launch_graph(self, graph: Any, stream: Any) -> None:
        self.ops.append("launch_graph")
        self.fake_execute(*self._last)

    def device_info(self) -> dict:
        return {"name": "Fake GPU", "compute_capability": self.cc}

    def fake_execute(self, addresses: dict, shapes: dict, model: FakeModel) -> None:
        """'Run' the engine: every output gets the sum of the first input, so tests can check data flow."""
        self._last = (addresses, shapes, model)
        self.ops.append("execute")
        inputs = [r for r in model.engine_io if r[1] == "INPUT"]
        first = inputs[0]
        shape = shapes[first[0]]
        x = self.mem[addresses[first[0]]][: int(np.prod(shape)) * 4].view(np.float32)
        for name, mode, dtype, dims in model.engine_io:
            if mode != "OUTPUT":
                continue
            out_shape = tuple(shape[0] if d == -1 else d for d in dims)
            np_dtype = np.int32 if dtype == "INT32" else np.float32
            value = np.full(out_shape, x.sum(), dtype=np_dtype)
            self.mem[addresses[name]][: value.nbytes] = np.frombuffer(value.tobytes(), np.uint8)
