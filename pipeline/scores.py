"""The one scores format that fit, fuse and evaluate share, and its alignment with labels.

A scores file (``scores.h5``) holds, per dev/test video on the 5 Hz label grid, ``t`` [n]
seconds, the payload -- ``p`` [n, K] class probabilities (``base.task: expr``) or ``va``
[n, 2] valence/arousal (``va``) -- and ``covered`` [n] (False where the model had no window
and the payload is the training prior or mean); group attribute ``split``.

:func:`payload` names the array for a task: ``p`` / ``y`` for expr, ``va`` for va.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.io.atomic import atomic_path, write_json
from pipeline.io.h5 import iter_groups_with_attrs

log = logging.getLogger(__name__)


def payload(task: str) -> tuple[str, str]:
    """(scores array, labels array) names for ``task``: ('p', 'y') or ('va', 'va')."""
    return ("va", "va") if task == "va" else ("p", "y")


def read_scores(path: str | Path, task: str = "expr") -> dict[str, dict[str, np.ndarray]]:
    """``{video_id: {"p" or "va", "covered", "split"}}`` of one scores file."""
    return {
        vid: {**g, "split": attrs["split"]}
        for vid, g, attrs in iter_groups_with_attrs(path, [payload(task)[0], "covered"])
    }


RAW_AUDIO_MODEL = "cnn_lstm_raw"  # seed 000's raw-audio model (fit_raw_audio.nets)
# every raw-audio network (the keys of fit_raw_audio.nets, pipeline.models.raw_audio)
RAW_AUDIO_MODELS = (RAW_AUDIO_MODEL, "spec_attention")
FEATURE_FUSION_MODEL = "feature_fusion"  # the fit_feature_fusion stage's model folder


def pipeline_models(
    classifiers: tuple[str, ...],
    features: tuple[str, ...],
    nets: tuple[str, ...] = (),
    raw_nets: tuple[str, ...] = (RAW_AUDIO_MODEL,),
) -> list[str]:
    """Names of the models the pipeline fits: the fit matrix, the raw-audio networks
    (``fit_raw_audio.nets``), seed 003's feature-level fusion network and the model-level
    fusion networks (``fit_fusion_net.nets``); model folders are named by the model."""
    matrix = sorted(f"{c}_{f}" for c in classifiers for f in features)
    return matrix + sorted(raw_nets) + [FEATURE_FUSION_MODEL] + sorted(nets)


def write_skipped(dst: str | Path, model: str, reason: str) -> None:
    """Write the skip record of a model with nothing to fit: the folder ``dst`` holding only
    ``report.json`` = ``{"model": model, "skipped": reason}`` (no ``scores.h5``)."""
    log.warning("%s: nothing to fit (%s); wrote a skip record to %s", model, reason, dst)
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        write_json(tmp / "report.json", {"model": model, "skipped": reason})


def skip_reason(folder: str | Path) -> str | None:
    """Why the model in ``folder`` was skipped (its skip record), or None when it was fitted."""
    report = Path(folder) / "report.json"
    if (Path(folder) / "scores.h5").is_file() or not report.is_file():
        return None
    return json.loads(report.read_text()).get("skipped")


def find_scores(root: str | Path, names: list[str] | None = None) -> dict[str, Path]:
    """``{model_name: scores.h5}`` under ``root``: the given ``names`` (each must exist, as
    scores or as a skip record, see :func:`write_skipped`; skipped models are left out), or
    every model folder with scores (sorted).

    Naming the models keeps folders of models no longer in the pipeline (left behind when
    ``fit.features`` shrinks) out of fusion and evaluation.

    Raises
    ------
    PipelineError
        A named model has neither scores nor a skip record, or every named model was skipped.
    """
    root = Path(root)
    if names is None:
        return {p.parent.name: p for p in sorted(root.glob("*/scores.h5"))}
    skipped = skipped_models(root, names)
    missing = [n for n in names if n not in skipped and not (root / n / "scores.h5").is_file()]
    if missing:
        raise PipelineError(f"{root}: no scores for {missing} (run their fit stages)")
    if names and len(skipped) == len(names):
        why = "; ".join(f"{n}: {w}" for n, w in skipped.items())
        raise PipelineError(f"{root}: every model was skipped ({why})")
    return {n: root / n / "scores.h5" for n in names if n not in skipped}


def skipped_models(root: str | Path, names: list[str]) -> dict[str, str]:
    """``{model_name: reason}`` of the named models under ``root`` that have a skip record."""
    reasons = {n: skip_reason(Path(root) / n) for n in names}
    return {n: why for n, why in reasons.items() if why}


def read_labels(path: str | Path, task: str = "expr") -> dict[str, dict]:
    """5 Hz labels: ``{video_id: {"y" [n] or "va" [n, 2], "split", "speaker"}}``.

    ``speaker`` is the group attribute written by ``resample_labels``; a file without one
    (or an empty one) gives the video id, so every video is its own speaker.
    """
    out = {}
    for vid, g, attrs in iter_groups_with_attrs(path, [payload(task)[1]]):
        out[vid] = {**g, "split": attrs["split"], "speaker": str(attrs.get("speaker") or vid)}
    return out


def stack_split(
    scores: dict[str, dict[str, dict]], labels: dict[str, dict], split: str, task: str = "expr"
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Align several models' scores with the labels of one split.

    Returns
    -------
    P : (L, N, K) float32 in the order of ``scores`` (K = 2 for va); y : (N,) int (-1
    unannotated), or (N, 2) float valence/arousal (NaN unannotated) for va;
    index : ``(video_id, n_bins)`` per video, in sorted order (to split N back by video).

    Raises
    ------
    PipelineError
        A model lacks a video of the split, or its grid length differs from the labels'.
    """
    key, lab_key = payload(task)
    vids = sorted(v for v, g in labels.items() if g["split"] == split)
    if not vids:
        raise PipelineError(f"split {split!r} has no videos")
    ps, index = [[] for _ in scores], []
    for vid in vids:
        n = len(labels[vid][lab_key])
        index.append((vid, n))
        for i, (name, sc) in enumerate(scores.items()):
            if vid not in sc:
                raise PipelineError(f"model {name}: no scores for {split} video {vid!r}")
            if len(sc[vid][key]) != n:
                raise PipelineError(
                    f"model {name}: {len(sc[vid][key])} score rows for {vid!r}, labels have {n}"
                )
            ps[i].append(sc[vid][key])
    P = np.stack([np.concatenate(p) for p in ps]).astype(np.float32)
    y = np.concatenate([labels[v][lab_key] for v in vids])
    return P, (y.astype(np.float32) if task == "va" else y.astype(np.int64)), index


def smooth_scores(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Centred moving average of one video's scores along the 5 Hz grid.

    Parameters
    ----------
    p : (n, ...) float array
        One video's scores, one row per grid bin (e.g. (n, K) class probabilities, (n, 2)
        valence/arousal, or (n, L, K) for several models).
    n_bins : int
        Window length in bins; 0 or 1 returns ``p`` unchanged. Bin i becomes the mean of
        bins ``i - (n_bins - 1) // 2`` to ``i + n_bins // 2`` (an even window reaches one
        bin further ahead), taken over the bins that exist: near the video's start and end
        the window is shorter, not padded.

    Returns
    -------
    (n, ...) array in the dtype of ``p``; rows of class probabilities still sum to 1.
    """
    p = np.asarray(p)
    if n_bins <= 1 or len(p) == 0:
        return p
    n = len(p)
    csum = np.cumsum(p, axis=0, dtype=np.float64)
    csum = np.concatenate([np.zeros((1,) + p.shape[1:]), csum])  # csum[i] = sum of rows < i
    i = np.arange(n)
    lo = np.maximum(i - (n_bins - 1) // 2, 0)
    hi = np.minimum(i + n_bins // 2 + 1, n)
    count = (hi - lo).reshape((n,) + (1,) * (p.ndim - 1))
    return ((csum[hi] - csum[lo]) / count).astype(p.dtype)


def smooth_stacked(P: np.ndarray, index: list[tuple[str, int]], n_bins: int) -> np.ndarray:
    """:func:`smooth_scores` applied video by video to the scores of :func:`stack_split`.

    Parameters
    ----------
    P : (L, N, D) float array
        Several models' scores, videos concatenated in the order of ``index``.
    index : list of (video_id, n_bins)
        As returned by :func:`stack_split`; windows never cross a video boundary.
    n_bins : int
        Window length (0 or 1: unchanged).

    Returns
    -------
    (L, N, D) array in the dtype of ``P``.
    """
    if n_bins <= 1:
        return P
    out = np.empty_like(P)
    start = 0
    for _, n in index:
        video = P[:, start : start + n].transpose(1, 0, 2)  # (n, L, D): bins first
        out[:, start : start + n] = smooth_scores(video, n_bins).transpose(1, 0, 2)
        start += n
    return out


def grid_scores(
    window_values: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Average window predictions [W, K] back onto ``n`` grid bins (as the paper does).

    Bins no window covers take ``fallback`` (the training prior or mean) and are not
    ``covered``. Returns ``(grid [n, K] float32, covered [n] bool)``.
    """
    from pipeline.features.windows import windows_to_grid

    grid = windows_to_grid(np.asarray(window_values, np.float64), starts, ends, n)
    covered = np.isfinite(grid).all(axis=1)
    grid[~covered] = fallback
    return grid.astype(np.float32), covered


def write_scores(
    dst: str | Path,
    scores: dict[str, dict[str, np.ndarray]],
    splits: dict[str, str],
    rate_hz: float,
    **file_attrs,
) -> None:
    """Write ``{video_id: {"p" or "va", "covered"}}`` as a scores file (module docstring)."""
    from pipeline.io.h5 import open_writer
    from pipeline.labels.resample import grid_times

    with open_writer(dst, rate_hz=float(rate_hz), **file_attrs) as w:
        for vid in sorted(scores):
            n = len(scores[vid]["covered"])
            w.add(vid, attrs={"split": splits[vid]}, t=grid_times(n, rate_hz), **scores[vid])
