"""Atomic file writes and hashing. Every file trtalign writes goes through here (temp file + fsync + rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (0666 less the umask); mkstemp alone gives 0600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _tmp_for(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.fchmod(fd, _default_mode())
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically: an interrupted write leaves the old file (or nothing), never half a file.

    ``fsync=False`` skips the flush to disk (still temp file + rename): for bulk writes of many small files (datasets),
    where a power loss may lose recent files but never leaves a half-written one under its final name."""
    path = Path(path)
    fd, tmp = _tmp_for(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, Paths, Enums, sets and objects with ``to_dict`` into JSON-friendly values."""
    import enum

    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    mod = type(obj).__module__
    if mod == "numpy":
        if hasattr(obj, "tolist"):
            return obj.tolist()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None  # JSON has no NaN/inf
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    For writers that insist on a file name (``onnx.save``, ``cv2.VideoWriter``, ``torch.save``).
    """
    path = Path(path)
    fd, tmp = _tmp_for(path)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def read_json_file(path: str | os.PathLike, what: str, unreadable: type | None = None) -> Any:
    """Parse the JSON file ``path``; a missing file is an InputError, an unreadable or malformed one ``unreadable``
    (InputError by default), both naming ``what`` the file should be (e.g. "ranges file")."""
    from trtalign.core.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise (unreadable or InputError)(f"cannot read {what} {path}: {exc}") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
