"""Engines: TensorRT build plans (pure data), version-aware builders, engine cache and inspector."""
