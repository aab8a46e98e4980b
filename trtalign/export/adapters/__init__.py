"""Model adapters: one module per model family (see :mod:`trtalign.export.adapters.base`)."""

from trtalign.export.adapters.base import ModelAdapter, ModelInfo, OutputLayout
from trtalign.export.adapters.registry import available_adapters, load_adapter, register_adapter

__all__ = ["ModelAdapter", "ModelInfo", "OutputLayout", "available_adapters", "load_adapter", "register_adapter"]
