"""Ctrl-C and SIGTERM: a real ``python -m trtalign`` process stops with exit 130, one line on stderr, no traceback,
and no half-written output.

The child starts in its own session (``start_new_session=True``) so that SIGINT is not inherited as ignored (a
background job of a non-interactive shell starts with SIGINT ignored) and so that the signal can be sent to its whole
process group, as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT


def start_cli(*argv: str, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, TRTALIGN_NO_PROGRESS="1", TRTALIGN_ORT_THREADS="1", YOLO_OFFLINE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "trtalign", *argv], cwd=str(cwd), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def interrupt(proc: subprocess.Popen, sig: int = signal.SIGINT, group: bool = True) -> tuple[int, str, str]:
    """Send ``sig`` to the process (its whole group when ``group``, like Ctrl-C) and wait for it."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_clean_interrupt(code: int, err: str, command: str, sig_name: str = "SIGINT") -> None:
    assert code == 130, f"exit {code}, stderr:\n{err[-3000:]}"
    assert "Traceback" not in err and "terminate called" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert lines == [f"trtalign {command}: interrupted ({sig_name})"], err[-3000:]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the command ended before the interrupt: {proc.communicate()}"
        assert time.monotonic() < end, "timed out waiting for the command to start its work"
        time.sleep(0.01)


def staging_folders(parent: Path) -> list[Path]:
    return sorted(parent.glob(".*.synth-*"))


@pytest.mark.parametrize("sig,group", [
    (signal.SIGINT, True),    # Ctrl-C in a terminal: the whole process group (render workers too)
    (signal.SIGTERM, False),  # a service manager stopping the process
])
def test_data_synth_interrupted_leaves_no_folder(tmp_path, sig, group):
    out = tmp_path / "ds"
    proc = start_cli("data", "synth", "--out", str(out), "--val", "5000", "--imgsz", "160", "--workers", "2",
                     cwd=tmp_path)
    # the staging folder holds images: the run is in the middle of writing the dataset
    wait_for(lambda: any(p.rglob("*.jpg") for p in staging_folders(tmp_path)) if staging_folders(tmp_path) else False,
             proc)
    code, _, err = interrupt(proc, sig, group)
    assert_clean_interrupt(code, err, "data", signal.Signals(sig).name)
    assert not out.exists(), "an interrupted synth must not leave a half-written dataset"
    assert staging_folders(tmp_path) == []
    # nothing blocks a re-run
    proc = start_cli("data", "synth", "--out", str(out), "--val", "3", "--imgsz", "96", cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert (out / "synth.json").is_file() and len(list((out / "images" / "val").iterdir())) == 3


def test_data_synth_interrupted_rerun_keeps_earlier_dataset(tmp_path):
    out = tmp_path / "ds"
    proc = start_cli("data", "synth", "--out", str(out), "--val", "4", "--imgsz", "96", cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (out / "notes.txt").write_text("mine")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = start_cli("data", "synth", "--out", str(out), "--val", "5000", "--imgsz", "160", "--seed", "1",
                     cwd=tmp_path)
    wait_for(lambda: any(p.rglob("*.jpg") for p in staging_folders(tmp_path)) if staging_folders(tmp_path) else False,
             proc)
    code, _, err = interrupt(proc)
    assert_clean_interrupt(code, err, "data")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert staging_folders(tmp_path) == []


def test_synth_refusal_says_what_to_do(tmp_path):
    out = tmp_path / "ds"
    (out / "images").mkdir(parents=True)
    proc = start_cli("data", "synth", "--out", str(out), "--val", "2", cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "rm -r" in err and "another --out" in err, err


@pytest.fixture(scope="module")
def eval_setup(tmp_path_factory):
    """The bundled proxy detector exported with its in-graph NMS (which ONNX Runtime runs as a Python custom op:
    the C++ -> Python callback where a KeyboardInterrupt used to abort the process) and 150 synthetic images."""
    from trtalign.data.synth import SynthParams, generate_dataset
    from trtalign.export.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("interrupt_eval")
    onnx_path = folder / "proxy.onnx"
    export_onnx(str(ROOT / "trtalign" / "assets" / "models" / "proxy_detect.pt"), onnx_path, imgsz=160)
    generate_dataset(folder / "ds", SynthParams(imgsz=160), val=150, seed=3)
    return folder, onnx_path


@pytest.mark.parametrize("delay", [1.5, 2.5, 3.5, 4.5])
def test_eval_interrupted_exits_130_without_abort(eval_setup, tmp_path, delay):
    """Interrupts at several moments of `trtalign eval` (start-up, inference with the Python NMS op, ...). Before the
    fix most of them ended in exit 134 ``terminate called after throwing ... pybind11::error_already_set``."""
    folder, onnx_path = eval_setup
    report, result = tmp_path / "report.html", tmp_path / "eval.json"
    proc = start_cli("eval", str(onnx_path), "--data", str(folder / "ds"), "--precisions", "fp32",
                     "--report", str(report), "--json", str(result), cwd=tmp_path)
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.skip(f"eval finished in under {delay} s: nothing left to interrupt")
    code, _, err = interrupt(proc)
    assert_clean_interrupt(code, err, "eval")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no report, no JSON, no temp file"


def test_calibrate_interrupted_writes_no_ranges(eval_setup, tmp_path):
    """`calibrate` runs ONNX Runtime over the images (no Python callback: NMS is cut off); stopped mid-way it writes
    neither the ranges nor the TensorRT cache, and leaves no temporary file."""
    folder, onnx_path = eval_setup
    proc = start_cli("calibrate", str(onnx_path), "--images", str(folder / "ds" / "images" / "val"), "--num", "150",
                     "--method", "entropy", "--out", str(tmp_path / "ranges.json"), "--trt-cache",
                     str(tmp_path / "calib.cache"), "--trt-version", "10.3", cwd=tmp_path)
    time.sleep(3.0)
    if proc.poll() is not None:
        pytest.skip("calibrate finished in under 3 s: nothing left to interrupt")
    code, _, err = interrupt(proc)
    assert_clean_interrupt(code, err, "calibrate")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
