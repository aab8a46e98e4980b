"""Fake quantization of a float PyTorch detector at exactly the Q/DQ sites that ``export.qdq.insert_qdq`` writes.

How the sites are found (no node-name parsing): the plan's placement is read from the FP32 ONNX
(``export.qdq._placement``: per quantized tensor, the nodes that read its DQ; plus, as in ``insert_qdq``, every
MaxPool / Resize outside the decode region reading a quantized tensor). Each such ONNX *consumer node* is then matched
to one operator call of the torch model **by value**: one probe forward in eval mode records every ``conv2d``, ``cat``,
``add``, ``max_pool2d`` and ``interpolate`` call (through a ``TorchFunctionMode``) with the innermost module that made
it and its occurrence index in that module; the raw ONNX runs once in ONNX Runtime on the same input with the
consumers' inputs as extra outputs. A Conv matches the torch call whose weight equals its initializer; any other
node matches the one call of the same kind whose inputs all equal its inputs (shape and values). Every site must map to
exactly one call, or :class:`~trtalign.core.errors.ModelError` says which did not.

Quantizers (INT8, symmetric, zero point 0, [-128, 127], ``torch.round`` = round-half-to-even like QuantizeLinear):

- activations: per tensor, one :class:`ActQuant` per scale-tie group (``GraphAnalysis.tie_groups``), so tied Concat /
  MaxPool / Resize tensors share one scale object exactly; initialised to the group's calibrated amax / 127 (the
  max over its members, as ``insert_qdq``); optionally learned (LSQ: gradient of the scale scaled by
  1/sqrt(numel * 127)); the input gets the clipped straight-through estimator.
- weights: per output channel, scale = max|w| / 127 of the *current* weight, recomputed at every forward (what
  ``insert_qdq`` writes from the exported weights), straight-through estimator.

A tensor read by several quantized consumers is quantized at each of them with the same quantizer: the values are
identical to the one shared Q/DQ of the ONNX graph. Everything torch-dependent is built inside functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from trtalign.core.errors import ModelError
from trtalign.export.ranges import MIN_AMAX, Ranges, TensorRange

QMIN, QMAX = -128, 127
#: torch function name -> kind of the ONNX op it exports to
TORCH_KINDS = {"conv2d": "Conv", "cat": "Concat", "concat": "Concat", "add": "Add", "__add__": "Add",
               "max_pool2d": "MaxPool", "interpolate": "Resize"}


def fake_quant(x: Any, scale: Any, learn: bool = False) -> Any:
    """Per-tensor symmetric INT8 quantize-dequantize of ``x`` with ``scale`` (a 0-d tensor); clipped STE for ``x``,
    LSQ gradient for ``scale`` when ``learn``."""
    import torch

    if learn:
        g = 1.0 / math.sqrt(max(x.numel() // max(x.shape[0], 1), 1) * QMAX)
        sg = scale * g
        s = scale.detach() + (sg - sg.detach())  # value exactly scale, gradient scaled by g
    else:
        s = scale.detach()
    v = torch.clamp(x / s, QMIN, QMAX)
    v = (torch.round(v) - v).detach() + v
    return v * s


def fake_quant_weight(w: Any) -> Any:
    """Per-output-channel (axis 0) symmetric INT8 quantize-dequantize of a conv weight, scale = max|w| / 127."""
    import torch

    amax = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(MIN_AMAX)
    s = amax / 127.0
    q = torch.clamp(torch.round(w / s), QMIN, QMAX) * s
    return w + (q - w).detach()


@dataclass
class Site:
    """One quantized input slot: the ONNX consumer node, the torch call it maps to, the tensor and its quantizer."""

    node: str
    kind: str
    slot: int
    tensor: str
    group: str  # tie-group root (the tensor itself when untied)
    call: tuple  # (module path, kind, occurrence)

    def to_dict(self) -> dict:
        return {"node": self.node, "kind": self.kind, "slot": self.slot, "tensor": self.tensor, "group": self.group,
                "call": list(self.call)}


@dataclass
class SiteMap:
    """All sites of a plan, the conv calls whose weights are quantized, and the tie groups (root -> tensors)."""

    sites: list[Site]
    weight_calls: dict[tuple, str]  # torch call -> ONNX Conv node
    groups: dict[str, list[str]]
    init_amax: dict[str, float]  # group root -> calibrated amax
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"sites": [s.to_dict() for s in self.sites],
                "weight_calls": {"|".join(map(str, k)): v for k, v in self.weight_calls.items()},
                "groups": self.groups, "init_amax": self.init_amax}


# --------------------------------------------------------------------------------------------- torch call tracking
def make_call_tracker(model: Any) -> Any:
    """A ``TorchFunctionMode`` over ``model`` that names every op call ``(module path, kind, occurrence)`` and lets a
    handler rewrite its inputs. Use ``with tracker:`` around the forward; ``tracker.remove()`` drops the hooks."""
    import torch
    from torch.overrides import TorchFunctionMode

    class CallTracker(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.counts: dict[tuple, int] = {}
            self.handler = None  # (call, kind, args, kwargs) -> (args, kwargs)
            self.hooks = []
            for name, mod in model.named_modules():
                self.hooks.append(mod.register_forward_pre_hook(self._push(name)))
                self.hooks.append(mod.register_forward_hook(self._pop))
            self.root = model

        def _push(self, name: str):
            def hook(mod, args):
                if mod is self.root:
                    self.counts.clear()
                    self.stack.clear()
                self.stack.append(name)
            return hook

        def _pop(self, mod, args, out):
            if self.stack:
                self.stack.pop()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            kind = TORCH_KINDS.get(getattr(func, "__name__", ""))
            if kind is not None and self.stack and self.handler is not None:
                key = (self.stack[-1], kind)
                n = self.counts.get(key, 0)
                self.counts[key] = n + 1
                args, kwargs = self.handler((self.stack[-1], kind, n), kind, args, kwargs)
            return func(*args, **kwargs)

        def remove(self) -> None:
            for h in self.hooks:
                h.remove()
            self.hooks = []

    _ = torch  # torch is needed by the mode machinery
    return CallTracker()


def slot_inputs(kind: str, args: Sequence[Any]) -> list:
    """The tensors of a call that correspond to the ONNX node's inputs, in ONNX input order."""
    if kind == "Concat":
        return list(args[0])
    if kind == "Add":
        return list(args[:2])
    return [args[0]]


def replace_slot(kind: str, args: tuple, slot: int, value: Any) -> tuple:
    args = list(args)
    if kind == "Concat":
        items = list(args[0])
        items[slot] = value
        args[0] = items
    else:
        args[slot] = value
    return tuple(args)


# -------------------------------------------------------------------------------------------------- site mapping
def placement_sites(analysis: Any, plan: Any) -> dict[str, list[tuple[str, int]]]:
    """``{ONNX consumer node: [(input slot, tensor)]}``: every input that reads a DQ in ``insert_qdq``'s output for
    ``plan`` (mode ``trt``), MaxPool / Resize forwarding included."""
    from trtalign.export.qdq import _placement

    _, sites = _placement(analysis, plan, "trt", model=None)
    return {t: sorted(v) for t, v in sites.items()}


def map_sites(model: Any, raw_onnx: Any, analysis: Any, plan: Any, ranges: Ranges, imgsz: Sequence[int],
              seed: int = 0) -> SiteMap:
    """Match every Q/DQ site of ``plan`` (on the ONNX ``analysis``) to an op call of the float torch ``model``
    (eval mode, the same network ``raw_onnx`` was exported from). Raises ModelError when a site has no unique match."""
    import torch
    from onnx import numpy_helper

    from trtalign.export.units import fold_constant_identities, node_label

    raw = fold_constant_identities(raw_onnx)
    nodes = list(raw.graph.node)
    by_label = {node_label(n, i): n for i, n in enumerate(nodes)}
    inits = {i.name: i for i in raw.graph.initializer}
    placed = placement_sites(analysis, plan)
    quantized = set(placed)
    consumers: dict[str, list[tuple[int, str]]] = {}
    for t, targets in placed.items():
        for lab, idx in targets:
            node = by_label.get(lab)
            if node is None:
                raise ModelError(f"Q/DQ site node {lab!r} is not in the raw ONNX of this model")
            for k, name in enumerate(node.input):
                if name == t and (idx == -1 or idx == k):
                    consumers.setdefault(lab, []).append((k, t))
    for lab, node in by_label.items():  # insert_qdq: MaxPool / Resize reading a quantized tensor read its DQ
        if node.op_type in ("MaxPool", "Resize") and lab not in analysis.decode_nodes and node.input \
                and node.input[0] in quantized:
            consumers.setdefault(lab, []).append((0, node.input[0]))

    # probe: torch calls with their inputs, ONNX consumer inputs from one ORT run
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, size=(1, 3, int(imgsz[0]), int(imgsz[1]))).astype(np.float32)
    calls: list[tuple[tuple, str, list, Any]] = []
    tracker = make_call_tracker(model)

    def record(call, kind, args, kwargs):
        ins = [a.detach().cpu().numpy() if torch.is_tensor(a) else None for a in slot_inputs(kind, args)]
        weight = args[1] if kind == "Conv" and len(args) > 1 else kwargs.get("weight")
        calls.append((call, kind, ins, weight))
        return args, kwargs

    tracker.handler = record
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tracker:
            model(torch.from_numpy(x))
    finally:
        tracker.remove()
        model.train(was_training)
    wanted = sorted({t for lab in consumers for t in (by_label[lab].input if by_label[lab].op_type in
                                                        ("Concat", "Add") else by_label[lab].input[:1])})
    values = _run_onnx_tensors(raw, wanted, x)

    weight_of = {}
    for call, kind, _, w in calls:
        if kind == "Conv" and w is not None:
            weight_of.setdefault(call, w.detach().cpu().numpy())
    sites: list[Site] = []
    weight_calls: dict[tuple, str] = {}
    int8_conv_nodes = {n for u in analysis.units if plan.units[u.name] == "int8" and u.kind == "conv" and u.weights
                       for n in u.nodes}
    order = {lab: i for i, lab in enumerate(by_label)}
    used: set = set()
    for lab in sorted(set(consumers) | int8_conv_nodes, key=lambda n: order[n]):  # graph (= execution) order
        node = by_label[lab]
        if node.op_type == "Conv":
            w = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
            hits = [c for c, v in weight_of.items() if w is not None and v.shape == w.shape and np.array_equal(v, w)]
        else:
            data = node.input if node.op_type in ("Concat", "Add") else node.input[:1]
            ins = [values.get(t) for t in data]
            hits = [c for c, kind, cins, _ in calls if kind == node.op_type and len(cins) == len(ins)
                    and all(a is not None and b is not None and a.shape == b.shape
                            and np.allclose(a, b, rtol=1e-3, atol=1e-4) for a, b in zip(cins, ins))]
        # several calls with equal inputs (e.g. SPPF's repeated MaxPool on a feature map it has already saturated)
        # are numerically interchangeable; they are taken in call order, as the exporter emitted their nodes
        free = [c for c in dict.fromkeys(hits) if c not in used]
        if not free or (len(free) > 1 and node.op_type == "Conv"):
            raise ModelError(f"cannot map ONNX node {lab!r} ({node.op_type}) to one operator call of the torch model: "
                             f"{len(free)} candidates {free[:3]}; the checkpoint and the ONNX must be the same network")
        call = free[0]
        used.add(call)
        if lab in int8_conv_nodes:
            weight_calls[call] = lab
        for k, t in consumers.get(lab, []):
            root = analysis.tie_groups.get(t, t)
            sites.append(Site(node=lab, kind=node.op_type, slot=k, tensor=t, group=root, call=call))
    members = analysis.tie_members()
    groups = {s.group: members.get(s.group, [s.group]) for s in sites}
    init_amax = {}
    for root, ms in groups.items():
        present = [ranges.amax(m) for m in ms if m in ranges.tensors]
        if not present:
            raise ModelError(f"no calibrated range for tensor group {root!r} ({', '.join(ms[:4])})")
        init_amax[root] = max(max(present), MIN_AMAX)
    return SiteMap(sites=sites, weight_calls=weight_calls, groups=groups, init_amax=init_amax)


def _run_onnx_tensors(raw: Any, names: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Values of the intermediate tensors ``names`` of ``raw`` on input ``x`` (ONNX Runtime)."""
    import onnx

    from trtalign.runtime.ort_runner import OrtRunner

    if not names:
        return {}
    probe = onnx.ModelProto.FromString(raw.SerializeToString())
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    with OrtRunner(probe, name="ort-fp32") as runner:
        return runner.infer({probe.graph.input[0].name: x})


# ---------------------------------------------------------------------------------------------- the QAT wrapper
def make_fake_quant_model(model: Any, site_map: SiteMap, learn_scales: bool = True) -> Any:
    """Wrap the float torch ``model`` (its parameters are shared, not copied) into an ``nn.Module`` whose forward
    fake-quantizes exactly the sites of ``site_map``. ``.scales`` is an ``nn.ParameterDict`` (group index -> scale);
    ``.group_names`` maps the index back to the ONNX tensor of the group root."""
    import torch
    from torch import nn

    class FakeQuantModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.site_map = site_map
            self.learn_scales = learn_scales
            self.group_names = sorted(site_map.groups)
            self.scales = nn.ParameterDict({
                str(i): nn.Parameter(torch.tensor(site_map.init_amax[g] / 127.0, dtype=torch.float32),
                                     requires_grad=learn_scales)
                for i, g in enumerate(self.group_names)})
            index = {g: str(i) for i, g in enumerate(self.group_names)}
            self._by_call: dict[tuple, list[tuple[int, str]]] = {}
            for s in site_map.sites:
                self._by_call.setdefault(s.call, []).append((s.slot, index[s.group]))
            self.enabled = True
            self._hits: set = set()

        def _handle(self, call, kind, args, kwargs):
            if not self.enabled:
                return args, kwargs
            for slot, key in self._by_call.get(call, ()):
                x = slot_inputs(kind, args)[slot]
                args = replace_slot(kind, args, slot, fake_quant(x, self.scales[key], self.learn_scales))
                self._hits.add(call)
            if kind == "Conv" and call in self.site_map.weight_calls:
                args = list(args)
                args[1] = fake_quant_weight(args[1])
                args = tuple(args)
                self._hits.add(call)
            return args, kwargs

        def forward(self, x):
            tracker = make_call_tracker(self.model)
            tracker.handler = self._handle
            try:
                with tracker:
                    return self.model(x)
            finally:
                tracker.remove()

        def check_coverage(self, x) -> None:
            """Run ``x`` once and raise ModelError unless every mapped site was applied (a training-mode forward
            must take the same calls as the eval-mode probe)."""
            self._hits = set()
            with torch.no_grad():
                self(x)
            expected = set(self._by_call) | set(self.site_map.weight_calls)
            missing = sorted(expected - self._hits, key=str)
            if missing:
                raise ModelError(f"{len(missing)} Q/DQ site(s) were not reached in a "
                                 f"{'training' if self.training else 'eval'} forward: {missing[:3]}")

        def amax(self) -> dict[str, float]:
            """Group root tensor -> amax (127 x the current scale)."""
            return {g: float(self.scales[str(i)].detach().abs().clamp_min(MIN_AMAX / 127.0)) * 127.0
                    for i, g in enumerate(self.group_names)}

        def clamp_scales(self) -> None:
            with torch.no_grad():
                for p in self.scales.values():
                    p.abs_().clamp_(min=MIN_AMAX / 127.0)

    return FakeQuantModel()


def trained_ranges(ranges: Ranges, group_amax: dict[str, float], groups: dict[str, list[str]],
                   method: str = "qat") -> Ranges:
    """``ranges`` with every member of every quantized group set to the group's trained amax (all members equal, so
    ``insert_qdq``'s group maximum is exactly the trained scale x 127)."""
    tensors = dict(ranges.tensors)
    for root, amax in group_amax.items():
        for m in groups[root]:
            tensors[m] = TensorRange(amax=float(amax), method=method)
    return Ranges(tensors=tensors, method=method, model_sha256=ranges.model_sha256, model_file=ranges.model_file,
                  params={**ranges.params, "qat_from": ranges.method}, data=dict(ranges.data))
