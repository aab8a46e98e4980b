"""The package's errors. Every error a user can cause is one of these, raised at the boundary.

The CLI turns any :class:`TrtalignError` into one line on stderr and exit code 2 (never a traceback).
Messages say what was expected, what was found and, where there is a closed set, the valid choices.
"""

from __future__ import annotations

from typing import Iterable


class TrtalignError(Exception):
    """Base class of every error trtalign raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class InputError(TrtalignError):
    """Bad user input: a missing or corrupt file, an out-of-range option, an empty folder."""


class ConfigError(TrtalignError):
    """A configuration file or option combination that is invalid."""


class ModelError(TrtalignError):
    """A model that cannot be loaded, exported or does not match its declared layout."""


class DependencyError(TrtalignError):
    """An optional dependency is missing; the message carries the install command."""


class UnsupportedError(TrtalignError):
    """A feature the selected TensorRT version / backend / platform does not have."""


class EngineError(TrtalignError):
    """TensorRT engine build, load or compatibility problems."""


class ServeError(TrtalignError):
    """Server-side request errors (mapped to 4xx responses)."""


def choices_text(valid: Iterable[object]) -> str:
    """Format a closed set of valid values for an error message: ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in valid)


def expect(condition: bool, message: str, error: type[TrtalignError] = InputError) -> None:
    """Raise ``error(message)`` unless ``condition`` holds. The package's replacement for ``assert`` on input."""
    if not condition:
        raise error(message)
