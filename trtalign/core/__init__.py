"""Core: the Detections type, config models, errors, logging, atomic writes and lazy imports.

Nothing in ``core`` imports any other trtalign subpackage.
"""
