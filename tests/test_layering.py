"""Layers import downward only, and the CPU path imports no heavy dependency at module import time."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import trtalign

PKG = Path(trtalign.__file__).parent

# subpackage -> subpackages it may import from
ALLOWED = {
    "core": set(),
    "assets": set(),
    "export": {"core"},
    "plugins": {"core"},
    "engines": {"core", "export", "plugins"},
    "runtime": {"core", "export", "plugins", "engines"},
    "data": {"core", "export", "plugins", "engines", "runtime"},
    "eval": {"core", "export", "plugins", "engines", "runtime", "data"},
    "tune": {"core", "export", "plugins", "engines", "runtime", "data", "eval"},
    "serve": {"core", "export", "plugins", "engines", "runtime"},
    "cli": {"core", "export", "plugins", "engines", "runtime", "data", "eval", "tune", "serve"},
}
HEAVY = ("tensorrt", "pycuda", "cuda", "torch", "torchvision", "ultralytics", "cupy")


def _modules():
    for info in pkgutil.walk_packages([str(PKG)], prefix="trtalign."):
        yield info.name


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node


def _top_level_nodes(tree: ast.Module):
    """Import nodes that execute at module import time (not inside functions, not under TYPE_CHECKING)."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            continue
        elif isinstance(node, (ast.Try, ast.If)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_layers_import_downward_only(path: Path):
    rel = path.relative_to(PKG)
    layer = rel.parts[0] if len(rel.parts) > 1 else None
    if layer is None:
        return  # trtalign/__init__.py, __main__.py
    allowed = ALLOWED[layer] | {layer}
    for name, node in _imports(path):
        if name.startswith("trtalign."):
            target = name.split(".")[1]
            assert target in allowed, f"{rel}:{node.lineno} imports {name}: layer '{layer}' may import {sorted(allowed)}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_heavy_import_at_module_level(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in _top_level_nodes(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in HEAVY, f"{path.relative_to(PKG)}:{node.lineno} imports {name} at import time"


def test_every_module_imports_without_heavy_dependencies():
    """Import every module in a fresh interpreter where torch/tensorrt/... are blocked."""
    code = f"""
import sys, importlib, pkgutil
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HEAVY!r}:
            raise ImportError('blocked heavy import: ' + name)
        return None
sys.meta_path.insert(0, Block())
import trtalign
for info in pkgutil.walk_packages(trtalign.__path__, prefix='trtalign.'):
    if info.name.endswith('__main__'):
        continue
    importlib.import_module(info.name)
print('ok')
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
