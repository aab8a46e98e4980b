"""Atomic writes: an interrupted write leaves the previous file (or nothing), never a half-file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from trtalign.core.io import atomic_path, atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sha256_file(p) == sha256_bytes(b"two")
    assert [f.name for f in p.parent.iterdir()] == ["a.bin"]  # no temp files left


def test_failed_writer_leaves_old_file_and_no_temp(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert p.read_bytes() == b"old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.onnx"]


def test_json_handles_numpy_and_nan(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": np.float32(1.5), "b": np.arange(3), "c": math.nan, "d": {1: np.int64(2)}})
    assert json.loads(p.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": {"1": 2}}


def test_written_files_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        p = atomic_write_bytes(tmp_path / "x.json", b"{}")
        with atomic_path(tmp_path / "y.onnx") as tmp:
            tmp.write_bytes(b"onnx")
    finally:
        os.umask(mask)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "y.onnx").stat().st_mode & 0o777) == oct(0o644)
