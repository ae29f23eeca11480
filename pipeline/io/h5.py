"""The one place that reads and writes the pipeline's HDF5 files.

Contract (see README, "Data contracts"):

- File attributes: ``stage``, ``params_digest``, a rate (``rate_hz`` or ``fps``), ``dim``
  and, where relevant, ``model`` and ``weights_sha256``.
- One group per video id, written in sorted id order. Inside: ``t`` (float64 seconds,
  [T]), the payload (``x`` float32 [T, D] embeddings, ``faces`` uint8 [T, H, W, 3],
  ``y`` int8 [T] labels, ``va`` float32 [T, 2], ``p`` float32 [T, K] scores, ...) and
  ``valid`` (bool [T]) where it applies. Groups may carry their own attributes.
- Written to a temporary file and renamed into place, so a killed stage never leaves a
  half-written output; no timestamps are stored, so the same inputs give the same bytes.
- An embedding file holds a group for every manifest video. A video that lacks the
  embedding's modality (no video stream for face features, no audio track for audio ones)
  has an empty group (``t`` [0], ``x`` [0, D], ``valid`` [0]) with group attribute
  ``skipped`` saying why (:func:`skipped_group`); ``window_stats`` gives it no windows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.errors import DataError
from pipeline.io.atomic import atomic_path

# Compress big payloads; lzf is fast and deterministic. Small arrays stay contiguous.
_COMPRESS_MIN_BYTES = 64 * 1024


def params_digest(params: Mapping[str, Any]) -> str:
    """Short, stable digest of a JSON-serialisable params mapping (16 hex chars)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def _write_arrays(group: h5py.Group, arrays: Mapping[str, np.ndarray]) -> None:
    for name in sorted(arrays):
        data = np.asarray(arrays[name])
        if data.nbytes >= _COMPRESS_MIN_BYTES and data.ndim >= 1:
            chunks = (min(len(data), max(1, (1 << 20) // max(1, data[0].nbytes))),) + data.shape[
                1:
            ]
            group.create_dataset(name, data=data, chunks=chunks, compression="lzf")
        else:
            group.create_dataset(name, data=data)


class H5Writer:
    """Write one contract file group by group (sorted ids enforced), atomically.

    Use through :func:`open_writer`; groups must be added in increasing id order so the
    bytes do not depend on processing order.
    """

    def __init__(self, handle: h5py.File, path: Path):
        self._f = handle
        self._path = path
        self._last: str | None = None

    def add(
        self, video_id: str, attrs: Mapping[str, Any] | None = None, **arrays: np.ndarray
    ) -> None:
        """Add group ``video_id`` holding ``arrays`` (and optional group attributes)."""
        _write_arrays(self._new_group(video_id, attrs), arrays)

    def stream(
        self,
        video_id: str,
        rows: Mapping[str, tuple[tuple[int, ...], Any]],
        attrs: Mapping[str, Any] | None = None,
        compression: str | None = "lzf",
        min_row_bytes: int = 1024,
        expected_rows: int | None = None,
    ) -> GroupAppender:
        """Add group ``video_id`` whose datasets grow by appending rows (bounded memory).

        Parameters
        ----------
        rows : ``{name: (row_shape, dtype)}``
            One dataset per name, of shape ``(T,) + row_shape``, T growing with each append.
        attrs : mapping, optional
            Group attributes.
        compression : {'lzf', 'gzip', None}
            Filter of the datasets whose rows hold at least ``min_row_bytes`` (by default face
            crops; small rows such as times and boxes stay uncompressed; 1 compresses all,
            e.g. a waveform).
        expected_rows : int, optional
            About how many rows the group will get (e.g. a short clip's sampled frames).
            Chunks then hold at most that many rows: an uncompressed chunk takes its whole
            size on disk however few rows it holds, so a 1 MiB chunk of a 12-row dataset
            is 1 MiB of file. More rows than expected still append (in more chunks). None:
            chunks of about 1 MiB (long or unknown lengths).
        """
        return GroupAppender(
            self._new_group(video_id, attrs), rows, compression, min_row_bytes, expected_rows
        )

    def _new_group(self, video_id: str, attrs: Mapping[str, Any] | None) -> h5py.Group:
        if self._last is not None and video_id <= self._last:
            raise ValueError(
                f"{self._path}: groups must be added in sorted order "
                f"({video_id!r} after {self._last!r})"
            )
        self._last = video_id
        group = self._f.create_group(video_id)
        for key in sorted(attrs or {}):
            group.attrs[key] = _attr_value(attrs[key])
        return group

    def set_attrs(self, **file_attrs: Any) -> None:
        """Set file attributes known only at the end (e.g. a streamed video's report)."""
        for key in sorted(file_attrs):
            self._f.attrs[key] = _attr_value(file_attrs[key])


class GroupAppender:
    """Growing datasets of one group; see :meth:`H5Writer.stream`.

    Chunks hold about 1 MiB of rows along time (at most ``expected_rows`` rows when given),
    so appends and later reads of a time range touch only the chunks they need.
    """

    def __init__(
        self,
        group: h5py.Group,
        rows: Mapping[str, tuple[tuple[int, ...], Any]],
        compression: str | None,
        min_row_bytes: int = 1024,
        expected_rows: int | None = None,
    ):
        self._ds = {}
        for name in sorted(rows):
            shape, dtype = tuple(rows[name][0]), np.dtype(rows[name][1])
            row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
            chunk_rows = max(1, (1 << 20) // row_bytes)
            if expected_rows is not None:
                chunk_rows = min(chunk_rows, max(1, int(expected_rows)))
            self._ds[name] = group.create_dataset(
                name,
                shape=(0,) + shape,
                maxshape=(None,) + shape,
                dtype=dtype,
                chunks=(chunk_rows,) + shape,
                compression=compression if row_bytes >= min_row_bytes else None,
            )
        self.n = 0

    def append(self, **arrays: np.ndarray) -> None:
        """Append the same number of rows to every dataset (all names, no others)."""
        if set(arrays) != set(self._ds):
            raise ValueError(f"append needs exactly {sorted(self._ds)}, got {sorted(arrays)}")
        counts = {len(a) for a in arrays.values()}
        if len(counts) != 1:
            raise ValueError(f"append got different row counts {sorted(counts)}")
        k = counts.pop()
        for name, ds in self._ds.items():
            ds.resize(self.n + k, axis=0)
            ds[self.n : self.n + k] = arrays[name]
        self.n += k


@contextmanager
def open_writer(dst: str | Path, **file_attrs: Any) -> Iterator[H5Writer]:
    """Open an atomic contract writer for ``dst`` with the given file attributes.

    The file appears at ``dst`` only when the ``with`` block ends without an error.
    """
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        # libver 'earliest' + no track_order/track_times keeps the bytes reproducible.
        with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
            for key in sorted(file_attrs):
                f.attrs[key] = _attr_value(file_attrs[key])
            yield H5Writer(f, dst)


SKIPPED = "skipped"  # group attribute: why a video has no frames in this file


def skipped_group(dim: int, reason: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and attributes of an embedding group for a video without this modality.

    Parameters
    ----------
    dim : int
        Embedding width D of the file.
    reason : str
        Why, e.g. ``"no video stream (modality audio)"``.

    Returns
    -------
    (``{"t": [0] float64, "x": [0, dim] float32, "valid": [0] bool}``, ``{"skipped": reason}``)
    """
    arrays = {"t": np.zeros(0), "x": np.zeros((0, dim), np.float32), "valid": np.zeros(0, bool)}
    return arrays, {SKIPPED: reason}


def write_h5(
    dst: str | Path, groups: Mapping[str, Mapping[str, np.ndarray]], **file_attrs: Any
) -> None:
    """Atomically write ``{video_id: {name: array}}`` to ``dst`` in sorted id order."""
    with open_writer(dst, **file_attrs) as w:
        for vid in sorted(groups):
            w.add(vid, **groups[vid])


class H5Reader:
    """Reads of one contract file through one open handle.

    A stage that reads every group (and its attributes) of a file with thousands of small
    groups, e.g. an image corpus of 30,000 one-frame items, would otherwise spend much of
    its time opening the file again for each read. Use through :func:`open_reader`.
    """

    def __init__(self, handle: h5py.File, path: Path):
        self._f = handle
        self.path = path

    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes (JSON-encoded values decoded)."""
        return {k: decode_attr(v) for k, v in self._f.attrs.items()}

    def ids(self) -> list[str]:
        """Every group (video id), sorted."""
        return sorted(self._f.keys())

    def group(self, video_id: str, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Arrays of one video group (all, or only ``names``)."""
        g = self._group(video_id)
        keys = names if names is not None else sorted(g.keys())
        missing = [k for k in keys if k not in g]
        if missing:
            raise DataError(self.path, f"video {video_id!r} lacks datasets {missing}")
        return {k: g[k][()] for k in keys}

    def group_attrs(self, video_id: str) -> dict[str, Any]:
        """Attributes of one video group (e.g. ``split``, ``speaker``, ``skipped``)."""
        return {k: decode_attr(v) for k, v in self._group(video_id).attrs.items()}

    def dataset(self, video_id: str, name: str) -> h5py.Dataset:
        """Dataset ``name`` of one video group, unread (for reading parts of it)."""
        g = self._group(video_id)
        if name not in g:
            raise DataError(self.path, f"no dataset {name!r} for video {video_id!r}")
        return g[name]

    def _group(self, video_id: str) -> h5py.Group:
        if video_id not in self._f:
            raise DataError(self.path, f"no group for video {video_id!r}")
        return self._f[video_id]


@contextmanager
def open_reader(path: str | Path) -> Iterator[H5Reader]:
    """Open a contract file for many reads; a missing or unreadable file is a DataError."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as err:
        raise DataError(path, f"not a readable HDF5 file ({err})") from None
    with f:
        yield H5Reader(f, path)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """File attributes of a contract file (JSON-encoded values decoded)."""
    with open_reader(path) as r:
        return r.attrs


def decode_attr(value: Any) -> Any:
    """An attribute as written by this module: JSON values decoded, numpy scalars unboxed."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{n":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_group(
    path: str | Path, video_id: str, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Arrays of one video group (all, or only ``names``); for many groups, :func:`open_reader`."""
    with open_reader(path) as r:
        return r.group(video_id, names)


def read_rows(
    path: str | Path, video_id: str, name: str, rows: np.ndarray, chunk: int = 512
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Rows ``rows`` (sorted int indices) of dataset ``name``, ``chunk`` rows at a time.

    Yields ``(indices, values)`` pairs, so a long video's face crops never sit in memory at
    once.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with open_reader(path) as r:
        ds = r.dataset(video_id, name)
        for s in range(0, len(rows), chunk):
            idx = rows[s : s + chunk]
            yield idx, ds[idx]


def iter_groups(
    path: str | Path, names: list[str] | None = None
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield ``(video_id, arrays)`` for every group in sorted order, one at a time."""
    with open_reader(path) as r:
        for vid in r.ids():
            yield vid, r.group(vid, names)


def iter_groups_with_attrs(
    path: str | Path, names: list[str] | None = None
) -> Iterator[tuple[str, dict[str, np.ndarray], dict[str, Any]]]:
    """Yield ``(video_id, arrays, group attributes)`` for every group in sorted order."""
    with open_reader(path) as r:
        for vid in r.ids():
            yield vid, r.group(vid, names), r.group_attrs(vid)


def is_fresh(path: str | Path, digest: str) -> bool:
    """True if ``path`` exists, opens cleanly and was written with ``params_digest``."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return decode_attr(f.attrs.get("params_digest")) == digest
    except OSError:  # truncated or corrupt: recompute
        return False


def read_group_attrs(path: str | Path, video_id: str) -> dict[str, Any]:
    """Attributes of one video group (e.g. ``split``, ``speaker``); for many groups,
    :func:`open_reader`."""
    with open_reader(path) as r:
        return r.group_attrs(video_id)
