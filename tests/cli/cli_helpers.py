"""Helpers for CLI tests that call ``trtalign.cli.main`` in-process."""

from __future__ import annotations


def main_captured(capsys, *argv):
    """``trtalign ARGV`` in this process: (exit code, stdout, stderr)."""
    import logging

    from trtalign.cli import main

    logger = logging.getLogger("trtalign")  # the CLI handler binds sys.stderr: rebind it to this test's capture
    for handler in [h for h in logger.handlers if getattr(h, "_trtalign_cli", False)]:
        logger.removeHandler(handler)
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(rc, err, fragment):
    """Exit 2 with exactly one error line that contains ``fragment``, and no traceback."""
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err
