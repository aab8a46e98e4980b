"""``metadata_props["trtalign"]`` of an exported ONNX: a JSON object with task, names, imgsz, stride, nms, source,
layout, batch (see docs/ARCHITECTURE.md). The only place that reads or writes it."""

from __future__ import annotations

import json
import os
from typing import Any

from trtalign.core.errors import ModelError

METADATA_KEY = "trtalign"


def write_metadata(model: Any, data: dict) -> Any:
    """Set (replace) ``metadata_props["trtalign"]`` on ``model`` (an ``onnx.ModelProto``) in place; returns it."""
    from trtalign.core.io import to_jsonable

    text = json.dumps(to_jsonable(data), sort_keys=True)
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, text
    return model


def read_metadata(model: Any) -> dict | None:
    """``metadata_props["trtalign"]`` as a dict, or None when absent. ``model``: ModelProto, path or bytes."""
    if isinstance(model, (str, os.PathLike, bytes)):
        import onnx

        try:
            model = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model),
                                                                                          load_external_data=False)
        except Exception as exc:
            raise ModelError(f"cannot read ONNX model: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                data = json.loads(prop.value)
            except json.JSONDecodeError as exc:
                raise ModelError(f"metadata_props['{METADATA_KEY}'] is not valid JSON: {exc}") from None
            return data if isinstance(data, dict) else None
    return None
