"""TensorRT version numbers: the one parser (``TrtVersion.parse``), used by the config, the engine build plans, the
engine cache and sidecars, and the calibration-cache headers. Pure data: no tensorrt import; what each version can do
is in :mod:`trtalign.engines.versions`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from trtalign.core.errors import ConfigError, UnsupportedError

#: the oldest TensorRT trtalign supports (JetPack 5.1)
MIN_VERSION = "8.5"


@functools.total_ordering
@dataclass(frozen=True)
class TrtVersion:
    major: int
    minor: int = 0
    patch: int = 0
    build: int = 0

    @classmethod
    def parse(cls, value: "str | TrtVersion") -> "TrtVersion":
        """``"8.6"``, ``"10.3.0"``, ``"11.4.0.106"`` or ``"trt-10.3"`` -> TrtVersion; anything else is a ConfigError."""
        if isinstance(value, TrtVersion):
            return value
        text = str(value).strip().lower().removeprefix("trt-").removeprefix("tensorrt-")
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?(?:[.+-].*)?", text)
        if not m:
            raise ConfigError(f"invalid TensorRT version {value!r}; expected MAJOR.MINOR[.PATCH], e.g. '8.6', '10.3', "
                              f"'11.4.0'")
        parts = [int(p) if p is not None else 0 for p in m.groups()]
        version = cls(*parts)
        if version < TrtVersion(8, 5):
            raise UnsupportedError(f"TensorRT {version} is not supported; trtalign needs TensorRT >= {MIN_VERSION} "
                                   f"(the name-based I/O API), got {value!r}")
        return version

    def _key(self) -> tuple:
        return (self.major, self.minor, self.patch, self.build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TrtVersion):
            other = TrtVersion.parse(other)  # type: ignore[arg-type]
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = TrtVersion.parse(other)
        return isinstance(other, TrtVersion) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        return f"{text}.{self.build}" if self.build else text

    @property
    def short(self) -> str:
        return f"{self.major}.{self.minor}"

    def same_engine_format(self, other: "TrtVersion") -> bool:
        """Engines deserialize only on the TensorRT they were built with (same major.minor.patch; build ignored)."""
        return (self.major, self.minor, self.patch) == (other.major, other.minor, other.patch)
