"""Check an output path before any work is done.

A run that computes for minutes and then finds that ``--out`` is a file (or sits under one,
or in a folder it may not write) loses that work and ends in a traceback. Both CLIs call
these checks right after parsing, before loading candles or compiling anything; the
messages name the option so the user knows what to change.
"""

from __future__ import annotations

import os
from pathlib import Path


class OutPathError(ValueError):
    """An output path that cannot be written (a usage error: exit 2)."""


def _existing_ancestor(path: Path) -> Path:
    """The nearest part of ``path`` (itself included) that exists."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_creatable(path: Path, option: str) -> None:
    """``path`` does not exist yet: its nearest existing ancestor must be a writable folder."""
    anc = _existing_ancestor(path.absolute())
    if not anc.is_dir():
        raise OutPathError(f"{option} {path}: {anc} is a file, so no folder can be created "
                           "under it; pick another path")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutPathError(f"{option} {path}: no permission to create it in {anc}")


def check_out_dir(path: str | Path, option: str = "--out") -> None:
    """``path`` is (or can be created as) a writable folder; :class:`OutPathError` if not."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise OutPathError(f"{option} {p} is a file, not a folder; pick a folder path")
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutPathError(f"{option} {p}: no permission to write in this folder")
        return
    _check_creatable(p, option)


def check_out_file(path: str | Path, option: str = "--out") -> None:
    """``path`` can be written as a file (not a folder, its folder writable or creatable)."""
    p = Path(path)
    if p.is_dir():
        raise OutPathError(f"{option} {p} is a folder; give a file path (e.g. {p / 'out.parquet'})")
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(p.absolute().parent, os.W_OK | os.X_OK):
            raise OutPathError(f"{option} {p}: no permission to replace this file")
        return
    _check_creatable(p, option)
