"""Shared fixtures. Tiny models and data are generated here, never downloaded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ultralytics must never reach the network or write into $HOME during tests
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "false")
os.environ.setdefault("TRTALIGN_NO_PROGRESS", "1")


@pytest.fixture(scope="session", autouse=True)
def _ultralytics_config_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo_config"))


def run_cli(*argv: str) -> tuple[int, str, str]:
    """Run ``trtalign`` in a subprocess; returns (exit code, stdout, stderr)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "trtalign", *argv], capture_output=True, text=True, cwd=str(ROOT),
                          timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli():
    return run_cli
