"""Hand-built minimal ELF shared objects with a chosen dynamic symbol table (no compiler needed)."""

from __future__ import annotations

import struct


def make_elf(path, symbols, *, is64=True, little=True, hidden=(), undefined=(), local=()):
    """A minimal shared-object ELF with a .dynsym/.dynstr holding ``symbols`` (plus the odd kinds named)."""
    end = "<" if little else ">"
    entries = [(n, 1, 0, 1) for n in symbols] + [(n, 1, 2, 1) for n in hidden] + \
              [(n, 1, 0, 0) for n in undefined] + [(n, 0, 0, 1) for n in local]  # (name, bind, visibility, shndx)
    dynstr, offsets = b"\0", []
    for name, *_ in entries:
        offsets.append(len(dynstr))
        dynstr += name.encode() + b"\0"
    if is64:
        sym = lambda o, b, v, s: struct.pack(end + "IBBHQQ", o, (b << 4) | 2, v, s, 0, 0)  # noqa: E731
        ehsize, shentsize, symsize = 64, 64, 24
    else:
        sym = lambda o, b, v, s: struct.pack(end + "IIIBBH", o, 0, 0, (b << 4) | 2, v, s)  # noqa: E731
        ehsize, shentsize, symsize = 52, 40, 16
    dynsym = b"\0" * symsize + b"".join(sym(o, b, v, s) for o, (_, b, v, s) in zip(offsets, entries))
    dynsym_off = ehsize
    dynstr_off = dynsym_off + len(dynsym)
    shoff = dynstr_off + len(dynstr)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1 if little else 2, 1]) + b"\0" * 9
    if is64:
        header = ident + struct.pack(end + "HHIQQQIHHHHHH", 3, 62, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 0)
        sh = lambda t, off, size, link, ent: struct.pack(end + "IIQQQQIIQQ", 0, t, 2, 0, off, size, link, 1, 8, ent)  # noqa: E731,E501
    else:
        header = ident + struct.pack(end + "HHIIIIIHHHHHH", 3, 3, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, 3, 0)
        sh = lambda t, off, size, link, ent: struct.pack(end + "IIIIIIIIII", 0, t, 2, 0, off, size, link, 1, 4, ent)  # noqa: E731,E501
    sections = b"\0" * shentsize + sh(11, dynsym_off, len(dynsym), 2, symsize) + sh(3, dynstr_off, len(dynstr), 0, 0)
    path.write_bytes(header + dynsym + dynstr + sections)
    return path
