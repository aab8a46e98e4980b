"""Which symbols a shared library exports, read from its ELF ``.dynsym`` without loading it.

Loading a TensorRT plugin library runs its static initialisers (``REGISTER_TENSORRT_PLUGIN``), and
``IPluginRegistry::loadLibrary`` refuses a library whose creators are already registered. So the loader must know,
*before* opening a library, whether it is made for ``loadLibrary`` (it exports ``getCreators`` / ``getPluginCreators``)
or registers itself when opened. Only the section headers, ``.dynsym`` and its string table are read (memory-mapped);
ELF32/ELF64, little and big endian. Not ELF (or unreadable): None.
"""

from __future__ import annotations

import mmap
import os
import struct

#: what IPluginRegistry::loadLibrary calls: IPluginV3 creators (TensorRT >= 10), IPluginV2 creators (8.6)
LOAD_LIBRARY_ENTRY_POINTS = ("getCreators", "getPluginCreators")

_SHT_DYNSYM = 11
_SHN_UNDEF = 0
_STB_GLOBAL, _STB_WEAK = 1, 2
_STV_HIDDEN, _STV_INTERNAL = 2, 1


def exported_symbols(path: str | os.PathLike) -> set[str] | None:
    """Names of the defined global/weak, visible symbols of ``path``'s dynamic symbol table; None if not ELF."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 64:
                return None
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(data)
    except (OSError, ValueError, struct.error, IndexError):
        return None


def _parse(data) -> set[str] | None:
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return None
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        sh_fmt, sym_fmt = end + "IIQQQQIIQQ", end + "IBBHQQ"
    else:
        shoff, = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        sh_fmt, sym_fmt = end + "IIIIIIIIII", end + "IIIBBH"
    if shoff == 0 or shnum == 0 or shentsize < struct.calcsize(sh_fmt):
        return None
    sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
    names: set[str] = set()
    sym_size = struct.calcsize(sym_fmt)
    for sec in sections:
        # (name, type, flags, addr, offset, size, link, info, align, entsize) in both classes
        if sec[1] != _SHT_DYNSYM:
            continue
        offset, sec_size, link, entsize = sec[4], sec[5], sec[6], sec[9] or sym_size
        str_off, str_size = sections[link][4], sections[link][5]
        for i in range(1, sec_size // entsize):  # entry 0 is the null symbol
            fields = struct.unpack_from(sym_fmt, data, offset + i * entsize)
            if is64:
                st_name, st_info, st_other, st_shndx = fields[0], fields[1], fields[2], fields[3]
            else:
                st_name, st_info, st_other, st_shndx = fields[0], fields[3], fields[4], fields[5]
            if st_shndx == _SHN_UNDEF or (st_info >> 4) not in (_STB_GLOBAL, _STB_WEAK):
                continue
            if (st_other & 3) in (_STV_HIDDEN, _STV_INTERNAL) or st_name >= str_size:
                continue
            start = str_off + st_name
            stop = data.find(b"\0", start, str_off + str_size)
            names.add(bytes(data[start:stop if stop >= 0 else str_off + str_size]).decode("utf-8", "replace"))
    return names


def load_library_entry_points(path: str | os.PathLike) -> list[str] | None:
    """The ``loadLibrary`` entry points ``path`` exports (possibly none); None when it cannot be read as ELF."""
    symbols = exported_symbols(path)
    if symbols is None:
        return None
    return [name for name in LOAD_LIBRARY_ENTRY_POINTS if name in symbols]
