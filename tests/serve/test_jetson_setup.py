"""scripts/jetson_setup.sh runs on a non-Jetson machine, says so, and reports what is missing without failing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "jetson_setup.sh"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.skipif(Path("/etc/nv_tegra_release").exists(), reason="this machine is a Jetson")
def test_reports_non_jetson_and_missing_pieces():
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "not a Jetson" in out and "/etc/nv_tegra_release is absent" in out
    assert "[ok]      trtalign" in out
    has_trt = subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True, timeout=60).returncode == 0
    assert ("[missing] tensorrt Python bindings" in out) != has_trt
    assert "Build tools" in out and ("[ok]      cmake" in out or "[missing] cmake" in out)
    assert proc.stderr == ""
