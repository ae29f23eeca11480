"""Checks on the HDF5 files the stages write, shared by tests."""

from __future__ import annotations

from pathlib import Path


def assert_small_datasets_fit_their_rows(path: Path, video_id: str) -> None:
    """Every per-frame dataset but the crops stores at most twice its rows' bytes (chunks
    sized by the clip's expected frames, not 1 MiB each: about 6 MB per clip)."""
    import h5py

    with h5py.File(path) as f:
        for name, ds in f[video_id].items():
            if name != "faces":
                assert 0 < ds.id.get_storage_size() <= 2 * ds.nbytes, (name, ds.chunks)
