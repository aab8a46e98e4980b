"""plugins.elf reads exported symbols without loading the library: hand-built ELF files (both classes and byte
orders) and a shared library compiled here, checked against ``nm -D`` when binutils is present."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from trtalign.plugins.elf import exported_symbols, load_library_entry_points

from .elf_files import make_elf


@pytest.mark.parametrize("is64", [True, False])
@pytest.mark.parametrize("little", [True, False])
def test_hand_built_elf_symbols(tmp_path, is64, little):
    lib = make_elf(tmp_path / "lib.so", ["getCreators", "setLoggerFinder"], is64=is64, little=little,
                   hidden=["hiddenFn"], undefined=["getPluginRegistry"], local=["localFn"])
    assert exported_symbols(lib) == {"getCreators", "setLoggerFinder"}
    assert load_library_entry_points(lib) == ["getCreators"]


def test_self_registering_library_has_no_entry_point(tmp_path):
    lib = make_elf(tmp_path / "libtrtalign_plugins.so", ["_ZN8trtalign3fooEv"], undefined=["getPluginRegistry"])
    assert load_library_entry_points(lib) == []


@pytest.mark.parametrize("content", [b"", b"\x7fELF", b"not an elf at all" * 10, b"\x7fELF\x09" + b"\0" * 80])
def test_not_elf_is_none(tmp_path, content):
    path = tmp_path / "x.so"
    path.write_bytes(content)
    assert exported_symbols(path) is None and load_library_entry_points(path) is None
    assert exported_symbols(tmp_path / "missing.so") is None


def test_truncated_elf_is_none_not_a_crash(tmp_path):
    full = make_elf(tmp_path / "full.so", ["getCreators"]).read_bytes()
    cut = tmp_path / "cut.so"
    cut.write_bytes(full[: len(full) - 70])  # section headers cut off
    assert exported_symbols(cut) is None


def test_compiled_library_matches_nm(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler (g++) on PATH")
    src = tmp_path / "lib.cpp"
    src.write_text('#include <cstdint>\n'
                   'extern "C" __attribute__((visibility("default"))) void* const* getCreators(int32_t& n) '
                   '{ n = 0; return nullptr; }\n'
                   'extern "C" __attribute__((visibility("hidden"))) int hidden_helper() { return 1; }\n'
                   'static int local_helper() { return 2; }\n'
                   'int exported_cpp(int x) { return x + local_helper(); }\n')
    lib = tmp_path / "libx.so"
    subprocess.run([cxx, "-shared", "-fPIC", "-O1", str(src), "-o", str(lib)], check=True)
    names = exported_symbols(lib)
    assert "getCreators" in names and "_Z12exported_cppi" in names
    assert "hidden_helper" not in names and not any("local_helper" in n for n in names)
    assert load_library_entry_points(lib) == ["getCreators"]
    nm = shutil.which("nm")
    if nm:
        out = subprocess.run([nm, "-D", "--defined-only", str(lib)], check=True, capture_output=True, text=True)
        listed = {line.split()[-1].split("@")[0] for line in out.stdout.splitlines()
                  if len(line.split()) == 3 and line.split()[1] in "TWDBRVuiG"}
        assert names == listed


def test_ctypes_loader_refuses_a_load_library_build(tmp_path):
    from trtalign.core.errors import InputError
    from trtalign.plugins.build import load_plugin_library

    lib = make_elf(tmp_path / "libtrtalign_plugins_dynamic.so", ["getCreators", "setLoggerFinder"])
    with pytest.raises(InputError, match="built for IPluginRegistry::loadLibrary .*load_library"):
        load_plugin_library(lib)
