"""No network look-ups at run time: a CLI command that imports ultralytics and creates ONNX Runtime sessions makes no
DNS look-up or connection attempt, and ONNX Runtime's telemetry is off before its first session.

The child process gets a ``sitecustomize.py`` (on PYTHONPATH) that records every ``socket.getaddrinfo`` /
``socket.create_connection`` call (and refuses it), and wraps ONNX Runtime's ``disable_telemetry_events`` and
``InferenceSession`` to record their order. YOLO_OFFLINE is removed from the child's environment: trtalign must set it
itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SITECUSTOMIZE = textwrap.dedent('''
    import importlib.abc, importlib.machinery, json, os, socket, sys, traceback

    _LOG = os.environ["TRTALIGN_TEST_NETLOG"]

    def _record(kind, detail):
        with open(_LOG, "a") as fh:
            fh.write(json.dumps({"event": kind, "detail": detail,
                                 "stack": traceback.format_stack(limit=6)}) + "\\n")

    def _refuse(kind):
        def call(*args, **kwargs):
            _record(kind, repr(args[:2]))
            raise OSError(f"{kind} refused by the test")
        return call

    socket.getaddrinfo = _refuse("getaddrinfo")
    socket.create_connection = _refuse("create_connection")

    class _WrapOnnxruntime(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "onnxruntime":
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            exec_module = spec.loader.exec_module

            def wrapped(module):
                exec_module(module)
                disable, session = module.disable_telemetry_events, module.InferenceSession

                def disable_telemetry_events():
                    _record("disable_telemetry_events", "")
                    return disable()

                class InferenceSession(session):
                    def __init__(self, *args, **kwargs):
                        _record("InferenceSession", "")
                        super().__init__(*args, **kwargs)

                module.disable_telemetry_events = disable_telemetry_events
                module.InferenceSession = InferenceSession

            spec.loader.exec_module = wrapped
            return spec

    sys.meta_path.insert(0, _WrapOnnxruntime())
''')


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from trtalign.data.synth import SynthParams, generate_dataset

    out = tmp_path_factory.mktemp("offline") / "ds"
    generate_dataset(out, SynthParams(imgsz=160), val=2, seed=1)
    return out


def test_eval_makes_no_network_lookup(tmp_path, dataset):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "net.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
    env.update(TRTALIGN_TEST_NETLOG=str(log), TRTALIGN_NO_PROGRESS="1", TRTALIGN_ORT_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT), env.get("PYTHONPATH", "")]))
    model = ROOT / "trtalign" / "assets" / "models" / "proxy_detect.pt"
    proc = subprocess.run([sys.executable, "-m", "trtalign", "eval", str(model), "--data", str(dataset),
                           "--precisions", "torch,fp32", "--imgsz", "160", "--workdir", str(tmp_path / "work")],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    lookups = [e for e in events if e["event"] in ("getaddrinfo", "create_connection")]
    assert lookups == [], "network look-ups:\n" + "\n".join(e["detail"] + "\n" + "".join(e["stack"])
                                                             for e in lookups)
    order = [e["event"] for e in events]
    assert "InferenceSession" in order, "the command must have run ONNX Runtime for this test to mean anything"
    assert order.index("disable_telemetry_events") < order.index("InferenceSession"), order


def test_user_setting_of_yolo_offline_is_kept(tmp_path):
    """trtalign sets YOLO_OFFLINE=1 only when the user has not set it."""
    code = ("import os, sys; from trtalign.cli import _offline_defaults; _offline_defaults(); "
            "print(os.environ['YOLO_OFFLINE'])")
    for given, expected in ((None, "1"), ("0", "0"), ("1", "1")):
        env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
        if given is not None:
            env["YOLO_OFFLINE"] = given
        env["PYTHONPATH"] = str(ROOT)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == expected, out.stderr
