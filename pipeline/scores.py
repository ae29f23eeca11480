"""The one scores format that fit, fuse and evaluate share, and its alignment with labels.

A scores file (``scores.h5``) holds, per dev/test video on the 5 Hz label grid, ``t`` [n]
seconds, ``p`` [n, K] class probabilities and ``covered`` [n] (False where the model had no
window and ``p`` is the training prior); group attribute ``split``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io.h5 import iter_groups, read_attrs, read_group_attrs


def read_scores(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{video_id: {"p", "covered", "split"}}`` of one scores file."""
    return {vid: {**g, "split": read_group_attrs(path, vid)["split"]}
            for vid, g in iter_groups(path, ["p", "covered"])}


def find_scores(root: str | Path) -> dict[str, Path]:
    """``{model_name: scores.h5}`` for every model folder under ``root`` (sorted)."""
    return {p.parent.name: p for p in sorted(Path(root).glob("*/scores.h5"))}


def read_labels(path: str | Path) -> dict[str, dict]:
    """5 Hz labels: ``{video_id: {"y" [n], "split"}}``."""
    return {vid: {**g, "split": read_group_attrs(path, vid)["split"]} for vid, g in iter_groups(path, ["y"])}


def stack_split(scores: dict[str, dict[str, dict]], labels: dict[str, dict], split: str,
                ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Align several models' scores with the labels of one split.

    Returns
    -------
    P : (L, N, K) float32 in the order of ``scores``; y : (N,) int (-1 unannotated);
    index : ``(video_id, n_bins)`` per video, in sorted order (to split N back by video).

    Raises
    ------
    PipelineError
        A model lacks a video of the split, or its grid length differs from the labels'.
    """
    vids = sorted(v for v, g in labels.items() if g["split"] == split)
    if not vids:
        raise PipelineError(f"split {split!r} has no videos")
    ps, index = [[] for _ in scores], []
    for vid in vids:
        n = len(labels[vid]["y"])
        index.append((vid, n))
        for i, (name, sc) in enumerate(scores.items()):
            if vid not in sc:
                raise PipelineError(f"model {name}: no scores for {split} video {vid!r}")
            if len(sc[vid]["p"]) != n:
                raise PipelineError(f"model {name}: {len(sc[vid]['p'])} score rows for {vid!r}, labels have {n}")
            ps[i].append(sc[vid]["p"])
    P = np.stack([np.concatenate(p) for p in ps]).astype(np.float32)
    y = np.concatenate([labels[v]["y"] for v in vids]).astype(np.int64)
    return P, y, index


def classes_of(path: str | Path) -> list[str]:
    """Class names stored with a scores file."""
    return list(read_attrs(path)["classes"])
