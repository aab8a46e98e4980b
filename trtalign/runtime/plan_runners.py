"""Models for trial plans: one Q/DQ ONNX per plan (cached on disk), or ONE gated model that serves every plan.

- :class:`QdqPlanModels`: ``export.qdq.insert_qdq`` per plan, written once per plan hash (the ``ort-int8sim``
  emulation as ``trtalign quantize`` writes it). Building a plan's model and an ONNX Runtime session costs more than
  scoring a small subset with it, so trying ~80 plans this way is dominated by that overhead.
- :class:`GatedQdqModel`: the full-INT8 Q/DQ ONNX of ``insert_qdq`` (so placement, tie groups, residual shortcuts and
  MaxPool/Resize reading the DQ are exactly ``export.qdq``'s) in which every consumer of a DequantizeLinear reads
  ``Where(gate, dequantized, original)`` instead; each unit has one boolean graph input ``gate``. One ONNX Runtime
  session then runs any plan by feeding the gates: ``Where`` selects values, so the numbers are those of the plan's
  own Q/DQ model up to float rounding of differently fused kernels (a few ulp; a test checks it). It saves the
  per-plan build + session (~3 s for a yolov8n at 320 px on a loaded 2-core machine) but every inference computes
  every Q/DQ and the convs cannot pre-pack their (now selected) weights: ~2x slower per image, so it pays off for
  small subsets only (``TuningSession.sensitivity(..., gated=True)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from trtalign.core.errors import InputError
from trtalign.core.io import atomic_write_bytes, sha256_bytes
from trtalign.export.gated import RAW_OUTPUT, build_gated_model, gate_name, keep_outputs
from trtalign.export.units import make_plan, plan_key
from trtalign.runtime.base import Runner, TensorMeta


class QdqPlanModels:
    """FP32 ONNX + ranges -> the Q/DQ ONNX of any plan (``ort-int8sim``), written once per plan hash in ``cache_dir``.

    ``expose`` names intermediate tensors (the raw head ``output0``) that the Q/DQ model also outputs; ``only``
    instead cuts the model down to those outputs (e.g. ``("output0",)``: no decode, no NMS, for output metrics).
    ``fp16sim``: a plan with units in ``fp16`` runs with FP16 numerics outside the INT8 Q/DQ paths
    (:func:`trtalign.export.fp16sim.fp16sim_model`), so its figures are those of the INT8 + FP16 engine; without
    it the units a plan puts in FP16 run in FP32.
    """

    def __init__(self, model: Any, ranges: Any, cache_dir: str | os.PathLike, expose: Sequence[str] = (RAW_OUTPUT,),
                 only: Sequence[str] | None = None, fp16sim: bool = True):
        from trtalign.export.units import analyze_graph, load_model

        self.model = load_model(model)
        self.ranges = ranges
        self.analysis = analyze_graph(self.model)
        self.units = list(self.analysis.units)
        self.unit_names = [u.name for u in self.units]
        self.cache_dir = Path(cache_dir)
        self.expose = list(expose)
        self.only = list(only) if only else None
        self.fp16sim = fp16sim
        ranges_text = json.dumps(ranges.to_dict()["tensors"], sort_keys=True)
        self._salt = sha256_bytes(self.model.SerializeToString() + ranges_text.encode())[:16]
        self.built = 0  # Q/DQ models written by this object (cache misses)

    def plan(self, fallback: Sequence[str] = (), target: str = "fp16"):
        return make_plan(self.units, fallback, target)

    def path_for(self, plan: Any) -> Path:
        from trtalign.export.graph_nms import expose_outputs
        from trtalign.export.qdq import insert_qdq

        fp16 = self.fp16sim and any(p == "fp16" for p in plan.units.values())
        tag = ("-raw" if self.only else "") + ("-fp16sim" if fp16 else "")
        path = self.cache_dir / f"qdq-{self._salt}-{plan_key(plan.units)}{tag}.onnx"
        if not path.is_file():
            out, _ = insert_qdq(self.model, self.ranges, plan)
            if fp16:
                from trtalign.export.fp16sim import fp16sim_model

                out, _ = fp16sim_model(out)
            if self.only:
                out = keep_outputs(out, self.only)
            elif self.expose:
                out = expose_outputs(out, self.expose)
            atomic_write_bytes(path, out.SerializeToString(), fsync=False)
            self.built += 1
        return path

    def runner(self, plan: Any) -> Any:
        from trtalign.runtime.ort_runner import OrtRunner

        return OrtRunner(self.path_for(plan), name="ort-int8sim")


class GatedQdqModel:
    """One ONNX Runtime session that runs the Q/DQ emulation of ANY plan (see the module doc). The units a plan
    keeps in float run in FP32 here (no FP16 emulation): use it to rank, and :class:`QdqPlanModels` to measure."""

    def __init__(self, model: Any, ranges: Any, analysis: Any = None, only: Sequence[str] = (RAW_OUTPUT,)):
        from trtalign.export.units import analyze_graph, load_model

        self.model = load_model(model)
        self.analysis = analysis or analyze_graph(self.model)
        self.units = list(self.analysis.units)
        self.unit_names = [u.name for u in self.units]
        self.proto = build_gated_model(self.model, ranges, self.analysis, only)
        self.session: Any = None

    def session_(self) -> Any:
        if self.session is None:
            from trtalign.core.ort import ort_session

            self.session = ort_session(self.proto)
        return self.session

    def gates(self, plan: Any) -> dict[str, np.ndarray]:
        unknown = sorted(set(plan.units) - set(self.unit_names))
        if unknown:
            raise InputError(f"plan names unit(s) not in this model: {', '.join(unknown[:5])}")
        return {gate_name(i): np.array(plan.units.get(u) == "int8") for i, u in enumerate(self.unit_names)}

    def runner(self, plan: Any) -> "GatedRunner":
        return GatedRunner(self, plan)


class GatedRunner(Runner):
    """``ort-int8sim`` of one plan on the shared gated session (activation costs nothing after the first)."""

    def __init__(self, model: GatedQdqModel, plan: Any, name: str = "ort-int8sim"):
        super().__init__(name)
        self.model = model
        self.feeds = model.gates(plan)

    def activate_impl(self) -> None:
        self.model.session_()

    def deactivate_impl(self) -> None:
        pass

    def input_metadata(self) -> list[TensorMeta]:
        i = self.model.session_().get_inputs()[0]
        return [TensorMeta(i.name, "float32", tuple(i.shape))]

    def output_metadata(self) -> list[TensorMeta]:
        return [TensorMeta(o.name, "float32", tuple(o.shape)) for o in self.model.session_().get_outputs()]

    def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.model.session_()
        names = [o.name for o in sess.get_outputs()]
        first = sess.get_inputs()[0].name
        return dict(zip(names, sess.run(names, {first: np.asarray(feed_dict[first]), **self.feeds})))


__all__ = ["QdqPlanModels", "GatedQdqModel", "GatedRunner"]
