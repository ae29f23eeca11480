"""Atomic outputs: write to a temporary path, then rename into place.

A killed stage therefore never leaves a half-written file or folder at an output path, and
DVC never caches a partial result. The temporary path lives outside every path DVC tracks:
in ``.dvc/tmp/avemo/`` of the DVC project that holds the output (same filesystem, so the
final rename is atomic). A temporary beside the output would sit inside a tracked folder
(a per-video output folder, or ``models/fit`` that ``fuse`` depends on) and change its hash
when a kill leaves it behind. Outside a DVC project, or when ``.dvc`` is on another
filesystem, the temporary goes beside the output.

Temporaries of processes that no longer run (a ``kill -9``) are removed by the next write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCRATCH = Path(".dvc") / "tmp" / "avemo"
_PREFIX = ".avemo-"  # temporaries are folders named .avemo-<pid>-<random>


@contextlib.contextmanager
def atomic_path(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path for ``dst``; rename it to ``dst`` only on success.

    Works for files and folders. On an exception the temporary path is removed and
    ``dst`` is left as it was.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    scratch = scratch_dir(dst)
    remove_stale(scratch)
    holder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=scratch))
    tmp = holder / dst.name
    try:
        yield tmp
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def scratch_dir(dst: Path) -> Path:
    """The folder for ``dst``'s temporaries (see the module docstring); created if needed."""
    parent = dst.parent.resolve()
    for folder in (parent, *parent.parents):
        if (folder / ".dvc").is_dir():
            scratch = folder / SCRATCH
            scratch.mkdir(parents=True, exist_ok=True)
            if os.stat(scratch).st_dev == os.stat(parent).st_dev:
                return scratch
            break
    return parent


def remove_stale(scratch: Path) -> None:
    """Remove temporaries in ``scratch`` whose writing process no longer runs."""
    for entry in scratch.glob(f"{_PREFIX}*-*"):
        pid = entry.name[len(_PREFIX) :].split("-", 1)[0]
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def write_json(dst: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON (stable bytes)."""
    with atomic_path(dst) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_history(dst: str | Path, history: list[dict], columns: list[str] | None = None) -> None:
    """Atomically write a training history (one dict per epoch) as CSV for ``dvc plots``.

    ``columns``: the header (default: the keys of the first row; a history without rows
    then gives an empty file). Floats are rounded to 6 decimals, None is left empty.
    """
    import csv
    import io

    columns = columns if columns is not None else list(history[0]) if history else []
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n", extrasaction="ignore")
    if columns:
        writer.writeheader()
    writer.writerows(
        {k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in history
    )
    write_text(dst, buf.getvalue())


def write_text(dst: str | Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(dst) as tmp:
        tmp.write_text(text)
