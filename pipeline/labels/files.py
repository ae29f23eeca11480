"""Read per-frame label files (Aff-Wild2 format) into arrays.

EXPR files: a header of class names (``Neutral,Anger,...``), then one class index per
video frame; ``-1`` means unannotated. VA files: a header ``valence,arousal``, then one
``v,a`` pair per frame in [-1, 1]; ``-5`` means unannotated (stored here as NaN).

Both are read as UTF-8 with or without a byte-order mark, with LF or CRLF line ends. Each
line after the header is one frame, so a blank line inside the file is an error (dropping it
would shift every later label by a frame); blank lines at the end are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import DataError


def read_expr_labels(path: str | Path, classes: tuple[str, ...]) -> np.ndarray:
    """Per-frame class indices into ``classes`` (header names matched case-insensitively).

    Returns
    -------
    (n_frames,) int16 array; -1 = unannotated.

    Raises
    ------
    DataError
        Unreadable file, a blank line inside it, a header class not in ``classes``, a
        non-integer line, or an index outside the header's range (the message gives the
        line number).
    """
    lines = _lines(path)
    header = [h.strip().lower() for h in lines[0].split(",")]
    wanted = [c.lower() for c in classes]
    unknown = [h for h in header if h not in wanted]
    if unknown:
        raise DataError(path, f"header classes {unknown} are not in base.classes {list(classes)}")
    remap = np.array([wanted.index(h) for h in header] + [-1], np.int16)  # index -1 -> -1
    values = np.empty(len(lines) - 1, np.int16)
    for i, line in enumerate(lines[1:], start=2):
        try:
            v = int(line)
        except ValueError:
            raise DataError(path, f"line {i}: {line!r} is not a class index") from None
        if not -1 <= v < len(header):
            raise DataError(path, f"line {i}: class index {v} outside [-1, {len(header) - 1}]")
        values[i - 2] = v
    return remap[values]


def read_va_labels(path: str | Path) -> np.ndarray:
    """Per-frame (valence, arousal); unannotated (-5 or out of [-1, 1]) rows become NaN.

    Returns
    -------
    (n_frames, 2) float32 array.

    Raises
    ------
    DataError
        Unreadable file, a blank line inside it, or a line that is not two comma-separated
        numbers (the message gives the line number).
    """
    lines = _lines(path)
    va = np.empty((len(lines) - 1, 2), np.float32)
    for i, line in enumerate(lines[1:], start=2):
        try:
            pair = [float(v) for v in line.split(",")]
        except ValueError:
            pair = []
        if len(pair) != 2:
            raise DataError(path, f"line {i}: {line!r} is not a valence,arousal pair")
        va[i - 2] = pair
    va[(np.abs(va) > 1).any(axis=1)] = np.nan
    return va


def count_frames(path: str | Path) -> int:
    """Number of frame lines in a label file (header excluded)."""
    return len(_lines(path)) - 1


def _lines(path: str | Path) -> list[str]:
    """Stripped lines: header first, then one per frame (trailing blank lines dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "label file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"label file unreadable ({err})") from None
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = next((i for i, ln in enumerate(lines, start=1) if not ln), 0)
    if blank:
        raise DataError(
            path,
            f"line {blank}: blank line inside the file (one line per frame; "
            "only blank lines at the end are allowed)",
        )
    if len(lines) < 2:
        raise DataError(path, "label file has a header but no frame labels")
    return lines
