"""Atomic outputs: write to a temporary sibling, then rename into place.

A killed stage therefore never leaves a half-written file or folder at an output path,
and DVC never caches a partial result.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dst``; rename it to ``dst`` only on success.

    Works for files and folders. On an exception the temporary path is removed and
    ``dst`` is left as it was.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        yield tmp
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(dst: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable bytes)."""
    with atomic_path(dst) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_text(dst: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(dst) as tmp:
        tmp.write_text(text)
