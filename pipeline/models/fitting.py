"""Fit a classifier on window features and deliver its class scores on the 5 Hz label grid.

Training uses the ``train`` split's valid windows with a label (window label != -1). Each
dev and test window then gets class probabilities, and overlapping windows are averaged
back onto the 5 Hz grid (as the paper does); grid bins that no valid window covers get the
training class prior and ``covered=False`` (every bin of a video without windows for the
feature, e.g. an audio-only clip for a face feature).

A class absent from the training windows cannot be predicted: its probability is 0 in
every score, the fit report lists it (``missing_classes``), and its dev windows are left
out of early stopping. For the SVM, whose
probability calibration needs a few samples per class, classes with fewer than 2 training
windows are treated the same way.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.errors import NothingToFit, PipelineError
from pipeline.metrics import at_chance
from pipeline.scores import grid_scores

log = logging.getLogger(__name__)


def training_windows(
    videos: dict[str, dict], split: str = "train"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid, labelled windows of ``split``: (X [N, F] float32, y [N] int64, video ids [N])."""
    xs, ys, groups = [], [], []
    for vid, g in sorted(videos.items()):
        if g["attrs"]["split"] != split:
            continue
        ok = g["valid"] & (g["y"] >= 0)
        xs.append(g["x"][ok])
        ys.append(g["y"][ok].astype(np.int64))
        groups.append(np.full(int(ok.sum()), vid, dtype=object))
    if not xs or sum(len(y) for y in ys) == 0:
        raise (NothingToFit if split == "train" else PipelineError)(
            f"no valid labelled windows in the {split!r} split (empty split, or no face/audio?)"
        )
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


def sequences(
    videos: dict[str, dict], split: str, seq_len: int
) -> tuple[np.ndarray, np.ndarray, list]:
    """Cut each video's window sequence into chunks of ``seq_len`` (zero/-1 padded).

    Returns (X [N, S, F], y [N, S] with -1 for invalid/unlabelled/padding, index list of
    ``(video_id, first_window, n_windows)``).
    """
    xs, ys, index = [], [], []
    for vid, g in sorted(videos.items()):
        if g["attrs"]["split"] != split:
            continue
        y = np.where(g["valid"], g["y"], -1).astype(np.int64)
        for s in range(0, len(y), seq_len):
            n = min(seq_len, len(y) - s)
            x = np.zeros((seq_len, g["x"].shape[1]), np.float32)
            yy = np.full(seq_len, -1, np.int64)
            x[:n], yy[:n] = g["x"][s : s + n], y[s : s + n]
            xs.append(x)
            ys.append(yy)
            index.append((vid, s, n))
    return np.stack(xs), np.stack(ys), index


def make_model(
    name: str, cfg: Any, y: np.ndarray, n_classes: int, seed: int, groups: np.ndarray | None = None
):
    """The unfitted estimator ``name`` (svm | kelm | lstm) with the stage's params.

    ``groups`` (video id per training window) keeps the SVM's calibration folds apart by
    video: overlapping windows of one video in both the fitting and the calibration part
    of a fold would make the Platt scaling over-confident.
    """
    if name == "svm":
        from pipeline.models.svm import calibration_folds, make_svm

        return make_svm(
            C=cfg.C,
            kernel=cfg.kernel,
            gamma=cfg.gamma,
            degree=cfg.degree,
            class_weight_r=cfg.class_weight_r,
            y=y,
            n_classes=n_classes,
            random_state=seed,
            calibration_cv=calibration_folds(y, groups),
        )
    if name == "kelm":
        from pipeline.models.kelm import KELMClassifier

        return make_pipeline(
            StandardScaler(),
            KELMClassifier(
                C=cfg.C,
                kernel=cfg.kernel,
                gamma=cfg.gamma,
                class_weight=cfg.class_weight,
                class_weight_r=cfg.class_weight_r,
                approximation=cfg.approximation,
                n_components=cfg.n_components,
                max_train=cfg.max_train,
                random_state=seed,
            ),
        )
    if name == "lstm":
        from pipeline.models.lstm import LSTMSequenceClassifier

        return LSTMSequenceClassifier(
            hidden=cfg.hidden,
            layers=cfg.layers,
            dropout=cfg.dropout,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            patience=cfg.patience,
            class_weight="log",
            class_weight_r=cfg.class_weight_r,
            random_state=seed,
        )
    raise PipelineError(f"unknown classifier {name!r}")


def full_proba(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Expand ``proba`` [N, len(classes)] to all ``n_classes`` columns (absent ones 0)."""
    out = np.zeros(proba.shape[:-1] + (n_classes,), np.float32)
    out[..., np.asarray(classes, int)] = proba
    return out


def training_prior(class_counts) -> np.ndarray:
    """Class prior [K] float32 from the training windows' class counts (``report.json``'s
    ``class_counts``): the scores of grid bins that no valid window covers."""
    counts = np.asarray(class_counts)
    return counts.astype(np.float32) / int(counts.sum())


def model_classes(model) -> np.ndarray:
    """The class indices a fitted classifier (or a pipeline ending in one) predicts."""
    return model.classes_ if hasattr(model, "classes_") else model[-1].classes_


def window_proba(
    name: str, model, videos: dict[str, dict], split: str, n_classes: int, seq_len: int = 0
) -> dict[str, np.ndarray]:
    """Class probabilities [W, K] of every window of the ``split`` videos.

    Parameters
    ----------
    name : svm | kelm | lstm (the LSTM scores sequences of ``seq_len`` windows)
    videos : ``{video_id: {"x", "y", "valid", "attrs": {"split", ...}}}`` (``y`` may be all
        -1: the LSTM's sequences carry it, nothing else reads it)

    Returns
    -------
    ``{video_id: (W, K) float32}``; classes the model never saw get 0. A video with W = 0
    windows (no such modality) gets a (0, K) array.
    """
    classes = model_classes(model)
    ids = sorted(v for v, g in videos.items() if g["attrs"]["split"] == split)
    if name == "lstm":
        Xq, _, index = sequences(videos, split, seq_len)
        pq = full_proba(model.predict_proba(Xq), classes, n_classes)
        per_window = {v: np.zeros((len(videos[v]["y"]), n_classes), np.float32) for v in ids}
        for (vid, s, n), p in zip(index, pq):
            per_window[vid][s : s + n] = p[:n]
        return per_window
    return {
        v: (
            full_proba(model.predict_proba(videos[v]["x"]), classes, n_classes)
            if len(videos[v]["x"])
            else np.zeros((0, n_classes), np.float32)
        )
        for v in ids
    }  # W = 0: a video without this feature's modality


def video_grid(
    window_values: np.ndarray, g: dict, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One video's window predictions (valid windows only) averaged onto its 5 Hz grid
    (``g["attrs"]["n_grid"]`` bins); :func:`pipeline.scores.grid_scores`."""
    ok = g["valid"]
    return grid_scores(
        window_values[ok], g["start"][ok], g["end"][ok], int(g["attrs"]["n_grid"]), fallback
    )


def fit_on_train(
    name: str, cfg: Any, videos: dict[str, dict], n_classes: int, seed: int
) -> tuple[Any, np.ndarray, list[int]]:
    """Fit ``name`` on the ``train`` split's windows (the LSTM stops early on ``dev``).

    Returns
    -------
    (fitted estimator, training labels y [N] int64, classes missing from training)
    """
    X, y, groups = training_windows(videos)
    if name == "svm" and cfg.max_train is not None and len(y) > cfg.max_train:
        # libsvm's time grows faster than n^2: 6,000 FER-2013 windows took 120 s, 28,709 would
        # take hours (README "FER-2013"); a seeded subset, in window order, as KELM's max_train
        keep = np.sort(np.random.default_rng(seed).choice(len(y), cfg.max_train, replace=False))
        log.info("svm: fitting on a seeded subset of %d of %d training windows", len(keep), len(y))
        X, y, groups = X[keep], y[keep], groups[keep]
    missing = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if name == "svm":  # calibration needs >= 2 windows per class
        counts = np.bincount(y, minlength=n_classes)
        rare = [k for k in range(n_classes) if 0 < counts[k] < 2]
        keep = ~np.isin(y, rare)
        X, y, groups = X[keep], y[keep], groups[keep]
        missing = sorted(set(missing) | set(rare))
    if missing:
        log.warning(
            "%s: classes %s have no (or too few) training windows; their scores are 0",
            name,
            missing,
        )
    if len(np.unique(y)) < 2:
        raise PipelineError(f"{name}: the training windows hold fewer than two classes")
    model = make_model(name, cfg, y, n_classes, seed, groups)
    if name == "lstm":
        Xs, ys, _ = sequences(videos, "train", cfg.seq_len)
        Xd, yd, _ = sequences(videos, "dev", cfg.seq_len)
        yd = np.where(np.isin(yd, np.unique(y)), yd, -1)  # classes unseen in training: not scored
        model.fit(Xs, ys, Xd, yd)
    else:
        model.fit(X, y)
    return model, y, missing


def score_split(
    name: str,
    model: Any,
    cfg: Any,
    videos: dict[str, dict],
    split: str,
    n_classes: int,
    prior: np.ndarray,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Scores of every ``split`` video on its 5 Hz grid, and the per-window probabilities.

    Returns
    -------
    (``{video_id: {"p" [n, K], "covered" [n]}}``, ``{video_id: (W, K) float32}``)
    """
    seq_len = cfg.seq_len if name == "lstm" else 0
    per_window = window_proba(name, model, videos, split, n_classes, seq_len)
    scores = {}
    for vid in sorted(per_window):
        p, covered = video_grid(per_window[vid], videos[vid], prior)
        scores[vid] = {"p": p, "covered": covered}
    return scores, per_window


def fit_and_score(
    name: str,
    cfg: Any,
    videos: dict[str, dict],
    n_classes: int,
    seed: int,
) -> tuple[Any, dict[str, dict], dict]:
    """Fit ``name`` on the train split and score every dev/test video on the 5 Hz grid.

    Parameters
    ----------
    cfg : FitSVMParams, FitKELMParams or FitLSTMParams
        The ``fit.<name>`` params; for ``lstm``, sequences are ``cfg.seq_len`` windows long.
        With ``cfg.oof_folds >= 2`` the train videos are scored too, out of fold, in folds
        by ``cfg.oof_group`` (:func:`out_of_fold_scores`); 0 = dev and test only.
    videos : ``{video_id: {"x", "y", "valid", "start", "end", "t", "attrs"}}`` from
        ``window_stats`` (``attrs`` holds ``split``, ``n_grid`` and ``speaker``).

    Returns
    -------
    (fitted estimator, ``{video_id: {"p" [n, K], "covered" [n]}}``, fit report)
    """
    model, y, missing = fit_on_train(name, cfg, videos, n_classes, seed)
    counts = np.bincount(y, minlength=n_classes)
    prior = training_prior(counts)
    scores: dict[str, dict] = {}
    dev_windows: dict[str, np.ndarray] = {}
    for split in ("dev", "test"):
        if any(g["attrs"]["split"] == split for g in videos.values()):
            part, per_window = score_split(name, model, cfg, videos, split, n_classes, prior)
            scores.update(part)
            if split == "dev":
                dev_windows = per_window
    report = {
        "model": name,
        "train_windows": int(len(y)),
        "missing_classes": missing,
        "class_counts": counts.tolist(),
        "dev_at_chance": dev_at_chance(videos, dev_windows, n_classes),
    }
    if hasattr(model, "history_"):
        report["history"] = model.history_
    if cfg.oof_folds >= 2:
        oof, report["out_of_fold"] = out_of_fold_scores(
            name, cfg, videos, n_classes, seed, cfg.oof_folds, cfg.oof_group
        )
        scores.update(oof)
    return model, scores, report


HELD_OUT = "held_out"  # the split name of the train videos an out-of-fold model scores


def oof_splits(
    splits: dict[str, str], speakers: dict[str, str | None], n_folds: int, group_by: str
) -> tuple[list[dict[str, str]], dict]:
    """Folds of the train videos for out-of-fold scores (``fit.oof_folds``).

    Parameters
    ----------
    splits : dict video_id -> split
    speakers : dict video_id -> speaker (None or "": the video is its own speaker)
    n_folds : int
        Folds wanted; capped at the number of train groups.
    group_by : {"speaker", "video"}
        What a fold never splits (``fuse.cv_group``), so no fold model scores a person (or
        video) it was trained on.

    Returns
    -------
    views : list of dict video_id -> split
        One per fold: ``splits`` with that fold's train videos renamed :data:`HELD_OUT`
        (scikit-learn's ``GroupKFold`` over the sorted train videos: deterministic, folds
        balanced by videos); empty when the train split has fewer than 2 groups.
    record : dict
        ``report.json``'s ``out_of_fold``: ``folds`` used, ``group``, ``groups`` (train
        groups) and the groups each fold held out.
    """
    train = sorted(v for v, s in splits.items() if s == "train")
    group = {v: str(speakers.get(v) or v) if group_by == "speaker" else v for v in train}
    n_groups = len(set(group.values()))
    k = min(int(n_folds), n_groups)
    folds = []
    if k >= 2:
        labels = np.array([group[v] for v in train])
        folds = [[train[i] for i in held] for _, held in GroupKFold(k).split(train, groups=labels)]
    else:
        log.warning("no out-of-fold train scores: the train split has %d group(s)", n_groups)
    views = [{v: HELD_OUT if v in out else s for v, s in splits.items()} for out in folds]
    record = {
        "folds": len(folds),
        "group": group_by,
        "groups": n_groups,
        "held_out": [sorted({group[v] for v in out}) for out in folds],
    }
    return views, record


def with_splits(videos: dict[str, dict], splits: dict[str, str]) -> dict[str, dict]:
    """``videos`` (window-file groups, split in ``attrs``) with the splits of ``splits``."""
    return {v: {**g, "attrs": {**g["attrs"], "split": splits[v]}} for v, g in videos.items()}


def out_of_fold_scores(
    name: str,
    cfg: Any,
    videos: dict[str, dict],
    n_classes: int,
    seed: int,
    n_folds: int,
    group_by: str,
) -> tuple[dict[str, dict], dict]:
    """Cross-fitted scores of the train videos, for fusion to learn from (``fit.oof_folds``).

    For each fold of :func:`oof_splits` the same estimator, with the same params and seed,
    is fitted without the fold's train videos and scores them. Every train video is thus
    scored by a model that never saw its group: its scores are as honest as dev scores, from
    a model trained on about (k-1)/k of the train groups.

    Returns
    -------
    scores : dict video_id -> {"p" [n, K], "covered" [n]}
        Every train video (empty when the train split has fewer than 2 groups).
    record : dict
        From :func:`oof_splits`, for ``report.json``.
    """
    splits = {v: g["attrs"]["split"] for v, g in videos.items()}
    speakers = {v: g["attrs"].get("speaker") for v, g in videos.items()}
    views, record = oof_splits(splits, speakers, n_folds, group_by)
    scores: dict[str, dict] = {}
    for f, view in enumerate(views):
        fold = with_splits(videos, view)
        model, y, _ = fit_on_train(name, cfg, fold, n_classes, seed)
        prior = training_prior(np.bincount(y, minlength=n_classes))
        part, _ = score_split(name, model, cfg, fold, HELD_OUT, n_classes, prior)
        scores.update(part)
        log.info(
            "%s: out-of-fold model %d/%d scored %d train videos",
            name,
            f + 1,
            len(views),
            len(part),
        )
    return scores, record


def dev_at_chance(
    videos: dict[str, dict], per_window: dict[str, np.ndarray], n_classes: int
) -> str | None:
    """Why the model is at chance on its dev windows (:func:`pipeline.metrics.at_chance`),
    or None; None as well when dev has no labelled valid window."""
    ys, preds = [], []
    for vid, p in per_window.items():
        ok = videos[vid]["valid"] & (videos[vid]["y"] >= 0)
        ys.append(videos[vid]["y"][ok])
        preds.append(p[ok].argmax(axis=1))
    if not ys or sum(len(y) for y in ys) == 0:
        return None
    reason = at_chance(np.concatenate(ys), np.concatenate(preds), n_classes)
    if reason:
        log.warning("dev windows: the model is at chance (%s)", reason)
    return reason


def make_regressor(name: str, cfg: Any):
    """The unfitted valence/arousal regressor ``name`` (svm -> SVR, kelm -> kernel ridge).

    Kernel ELM regression is kernel ridge regression: beta = (I / C + K)^-1 Y, i.e.
    scikit-learn's ``KernelRidge`` with ``alpha = 1 / C``.
    """
    if name == "svm":
        from sklearn.multioutput import MultiOutputRegressor
        from sklearn.svm import SVR

        return make_pipeline(
            StandardScaler(),
            MultiOutputRegressor(
                SVR(C=cfg.C, kernel=cfg.kernel, gamma=cfg.gamma, degree=cfg.degree)
            ),
        )
    if name == "kelm":
        from sklearn.kernel_ridge import KernelRidge

        if cfg.approximation is not None:
            raise PipelineError("fit.kelm.approximation: not available for task va")
        gamma = (
            None if cfg.gamma in ("scale", "auto") else cfg.gamma
        )  # KernelRidge: None = 1 / n_features
        return make_pipeline(
            StandardScaler(), KernelRidge(alpha=1.0 / cfg.C, kernel=cfg.kernel, gamma=gamma)
        )
    raise PipelineError(
        f"{name}: task va supports the svm and kelm models (LSTM regression is not implemented)"
    )


def fit_and_score_va(
    name: str, cfg: Any, videos: dict[str, dict]
) -> tuple[Any, dict[str, dict], dict]:
    """Valence/arousal version of :func:`fit_and_score`: scores hold ``va`` [n, 2] in [-1, 1].

    Training windows are valid windows whose mean valence and arousal are defined; bins no
    valid window covers get the training mean and ``covered=False``. With
    ``cfg.oof_folds >= 2`` the train videos are scored too, out of fold (:func:`oof_splits`).
    """
    model, scores, report = _fit_va(name, cfg, videos, ("dev", "test"))
    if cfg.oof_folds >= 2:
        splits = {v: g["attrs"]["split"] for v, g in videos.items()}
        speakers = {v: g["attrs"].get("speaker") for v, g in videos.items()}
        views, report["out_of_fold"] = oof_splits(splits, speakers, cfg.oof_folds, cfg.oof_group)
        for view in views:
            scores.update(_fit_va(name, cfg, with_splits(videos, view), (HELD_OUT,))[1])
    return model, scores, report


def _fit_va(
    name: str, cfg: Any, videos: dict[str, dict], scored: tuple[str, ...]
) -> tuple[Any, dict[str, dict], dict]:
    """Fit the regressor on the train split; score the videos of the ``scored`` splits."""
    xs, ys = [], []
    for g in videos.values():
        if g["attrs"]["split"] == "train":
            ok = g["valid"] & np.isfinite(g["va"]).all(axis=1)
            xs.append(g["x"][ok])
            ys.append(g["va"][ok])
    if not xs or sum(len(y) for y in ys) == 0:
        raise NothingToFit("no valid annotated windows in the 'train' split")
    X, Y = np.concatenate(xs), np.concatenate(ys)
    model = make_regressor(name, cfg).fit(X, Y)
    mean = Y.mean(axis=0).astype(np.float32)
    scores = {}
    for vid, g in sorted(videos.items()):
        if g["attrs"]["split"] not in scored:
            continue
        va, covered = video_grid(window_va_pred(model, g), g, mean)
        scores[vid] = {"va": va, "covered": covered}
    report = {
        "model": name,
        "task": "va",
        "train_windows": int(len(Y)),
        "train_mean": mean.tolist(),
    }
    return model, scores, report


def window_va_pred(model, g: dict) -> np.ndarray:
    """Valence/arousal [W, 2] in [-1, 1] of a video's windows; only valid windows are
    predicted (the others hold 0, and :func:`video_grid` never reads them)."""
    ok = g["valid"]
    out = np.zeros((len(ok), 2))
    if ok.any():
        out[ok] = np.clip(model.predict(g["x"][ok]), -1, 1)
    return out
