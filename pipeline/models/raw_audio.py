"""The paper's model 4: a 1D CNN + LSTM on raw vocal waveforms, scored on the 5 Hz grid.

For ``base.task: va`` the same network regresses valence and arousal (two tanh outputs),
trained on 1 - CCC, the loss of the LSTM/CCC paper on RECOLA (:func:`fit_raw_audio_va`).

Each video's (separated) 16 kHz audio is cut into windows of ``window_s`` seconds with an
``overlap`` of 2/5 of the window (the paper's setting); a window's label is the most
frequent valid 5 Hz label it covers. Training uses the train split, early stopping the dev
split; dev/test window probabilities are averaged back onto the grid like every other model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import NothingToFit, PipelineError
from pipeline.features.windows import window_labels, window_va
from pipeline.metrics import at_chance
from pipeline.models.audio_cnn_lstm import (
    AudioCNNLSTMClassifier,
    build_raw_net,
    raw_audio_windows,
)
from pipeline.models.fitting import HELD_OUT, full_proba, oof_splits
from pipeline.models.losses import ccc_loss
from pipeline.scores import grid_scores

log = logging.getLogger(__name__)

# model name (a key of fit_raw_audio.nets, its folder under models/fit) -> network
RAW_AUDIO_NETS = {"cnn_lstm_raw": "cnn_lstm", "spec_attention": "spec_attention"}


def net_keywords(
    name: str, cfg: Any, videos: dict[str, dict], init: Path | None = None
) -> dict[str, Any]:
    """``net``, ``net_params`` and ``init`` of the raw-audio model ``name``: its network kind,
    its hyper-parameters from ``cfg.nets[name]`` plus the sample rate of the videos' audio
    (one rate for all, else a one-line error), and the ``pretrain_audio`` checkpoint to start
    from (as a string; None: from scratch). ``pretrained`` decides ``init`` and is not passed
    to the network."""
    start = None if init is None else str(init)
    if name not in RAW_AUDIO_NETS:
        raise PipelineError(
            f"fit_raw_audio: unknown network {name!r} (known: {list(RAW_AUDIO_NETS)})"
        )
    net = RAW_AUDIO_NETS[name]
    rates = sorted({int(g["rate_hz"]) for g in videos.values() if g["wave"] is not None})
    if len(rates) > 1:
        raise PipelineError(f"fit_raw_audio: the audio files have different sample rates {rates}")
    hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg.nets[name]).items()}
    hyper.pop("pretrained", None)  # decides ``init``
    net_params = {**hyper, "sample_rate": rates[0] if rates else 16000}
    return {"net": net, "net_params": net_params, "init": start}


def labelled_windows(
    wave: np.ndarray,
    sr: int,
    y_grid: np.ndarray,
    rate_hz: float,
    window_s: float,
    overlap: float,
    n_classes: int,
) -> dict[str, np.ndarray]:
    """Windows of one video with their grid span and label.

    Returns ``x`` [W, samples] float32, ``y`` [W] int (-1 if no labelled bin), ``start`` and
    ``end`` [W] grid bins (end exclusive, clipped to the grid).
    """
    x, start, end = _spans(wave, sr, window_s, overlap, rate_hz, len(y_grid))
    return {"x": x, "y": window_labels(y_grid, start, end, n_classes), "start": start, "end": end}


def _spans(wave: np.ndarray, sr: int, window_s: float, overlap: float, rate_hz: float, n: int):
    """Raw-audio windows and the grid bins ``[start, end)`` each covers (clipped to ``n``)."""
    x, starts_s = raw_audio_windows(wave, sr, window_s, overlap)
    return (x, *grid_span(starts_s, window_s, rate_hz, n))


def grid_span(
    starts_s: np.ndarray, window_s: float, rate_hz: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The bins ``[start, end)`` of an ``n``-bin grid at ``rate_hz`` that windows of
    ``window_s`` seconds starting at ``starts_s`` [W] cover (each at least one bin)."""
    start = np.clip(np.floor(starts_s * rate_hz + 1e-9).astype(np.int64), 0, n - 1)
    end = np.clip(np.ceil((starts_s + window_s) * rate_hz - 1e-9).astype(np.int64), start + 1, n)
    return start, end


def raw_audio_prior(class_counts) -> np.ndarray:
    """Class prior [K] float32 from the training windows' class counts (``report.json``'s
    ``class_counts``): the scores of a video without audio."""
    counts = np.asarray(class_counts)
    return (counts / counts.sum()).astype(np.float32)


def video_windows(
    wave: np.ndarray, sr: int, n: int, window_s: float, overlap: float, rate_hz: float
) -> dict[str, np.ndarray]:
    """Raw-audio windows of one video without labels: ``x`` [W, samples], ``start``/``end``
    [W] bins of its ``n``-bin grid (what :func:`raw_audio_grid` scores)."""
    x, start, end = _spans(wave, sr, window_s, overlap, rate_hz, n)
    return {"x": x, "start": start, "end": end}


def raw_audio_grid(
    model: AudioCNNLSTMClassifier,
    x: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    n: int,
    prior: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of raw-audio windows ``x`` averaged onto an ``n``-bin grid:
    ``(p [n, K] float32, covered [n])``; uncovered bins get ``prior``."""
    p = full_proba(model.predict_proba(x), model.classes_, len(prior))
    return grid_scores(p, start, end, n, prior)


def fit_raw_audio(
    videos: dict[str, dict],
    cfg: Any,
    n_classes: int,
    seed: int,
    rate_hz: float,
    device: str = "cpu",
    init: Path | None = None,
    name: str = "cnn_lstm_raw",
) -> tuple[AudioCNNLSTMClassifier, dict[str, dict], dict]:
    """Fit on train windows (early stopping on dev) and score dev/test videos on the grid.

    Parameters
    ----------
    videos : ``{video_id: {"wave" [S] or None, "rate_hz", "y" [n] grid labels, "split",
        "speaker"}}``; videos without audio (``wave`` None) get the training prior and
        ``covered=False``.
    cfg : FitRawAudioParams
        With ``cfg.oof_folds >= 2`` the train videos are scored too, out of fold (k models
        fitted without one group of ``cfg.oof_group`` each, as
        :func:`pipeline.models.fitting.out_of_fold_scores` does for the fit matrix).
    init : a ``pretrain_audio`` checkpoint to start from
        (``fit_raw_audio.nets.cnn_lstm_raw.pretrained``), or None: the network from scratch
    name : the model, a key of :data:`RAW_AUDIO_NETS` (``cnn_lstm_raw``: seed 000's model 4;
        ``spec_attention``: seed 001's spectrogram CNN with attention, hyper-parameters
        ``cfg.nets[name]``)
    """
    net_kw = net_keywords(name, cfg, videos, init)
    win = {
        v: labelled_windows(
            g["wave"], g["rate_hz"], g["y"], rate_hz, cfg.window_s, cfg.overlap, n_classes
        )
        for v, g in videos.items()
        if g["wave"] is not None and len(g["wave"])
    }
    splits = {v: g["split"] for v, g in videos.items()}
    model, y, (Xd, yd) = _train_raw(win, splits, cfg, seed, device, net_kw)
    counts = np.bincount(y[y >= 0], minlength=n_classes)
    scores = _score_raw(model, win, videos, splits, ("dev", "test"), raw_audio_prior(counts))
    report = {
        "model": name,
        "init": None if init is None else init.name,
        "train_windows": int((y >= 0).sum()),
        "class_counts": counts.tolist(),
        "missing_classes": [k for k in range(n_classes) if counts[k] == 0],
        "history": getattr(model, "history_", []),
        "dev_at_chance": (
            at_chance(yd[yd >= 0], model.predict(Xd[yd >= 0]), n_classes)
            if (yd >= 0).any()
            else None
        ),
    }
    if cfg.oof_folds >= 2:
        speakers = {v: g.get("speaker") for v, g in videos.items()}
        views, report["out_of_fold"] = oof_splits(splits, speakers, cfg.oof_folds, cfg.oof_group)
        for f, view in enumerate(views):
            fold_model, fold_y, _ = _train_raw(win, view, cfg, seed, device, net_kw)
            prior = raw_audio_prior(np.bincount(fold_y[fold_y >= 0], minlength=n_classes))
            part = _score_raw(fold_model, win, videos, view, (HELD_OUT,), prior)
            scores.update(part)
            log.info(
                "%s: out-of-fold model %d/%d scored %d train videos",
                name,
                f + 1,
                len(views),
                len(part),
            )
    return model, scores, report


def _train_raw(
    win: dict[str, dict],
    splits: dict[str, str],
    cfg: Any,
    seed: int,
    device: str,
    net_kw: dict[str, Any],
) -> tuple[AudioCNNLSTMClassifier, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Fit the network (``net_kw``: :func:`net_keywords`) on the windows of ``splits``' train
    videos, early stopping on dev.

    Returns the fitted classifier, the training window labels (-1: unlabelled) and the dev
    windows ``(Xd, yd)`` (classes unseen in training: -1).
    """

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [w for v, w in sorted(win.items()) if splits[v] == split]
        if not parts:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.int64)
        return np.concatenate([w["x"] for w in parts]), np.concatenate(
            [w["y"] for w in parts]
        ).astype(np.int64)

    X, y = stack("train")
    if (y >= 0).sum() == 0:
        raise NothingToFit("fit_raw_audio: no labelled audio windows in the train split")
    Xd, yd = stack("dev")
    yd = np.where(
        np.isin(yd, np.unique(y[y >= 0])), yd, -1
    )  # classes unseen in training: not scored
    model = AudioCNNLSTMClassifier(
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        patience=cfg.patience,
        augment=cfg.augment,
        spec_masks=cfg.spec_masks,
        cosine=cfg.cosine,
        ema=cfg.ema,
        select=cfg.select,
        **net_kw,
        class_weight="log",
        class_weight_r=cfg.class_weight_r,
        device=device,
        random_state=seed,
    )
    model.fit(X, y, Xd if len(yd) else None, yd if len(yd) else None)
    return model, y, (Xd, yd)


def _score_raw(
    model: AudioCNNLSTMClassifier,
    win: dict[str, dict],
    videos: dict[str, dict],
    splits: dict[str, str],
    scored: tuple[str, ...],
    prior: np.ndarray,
) -> dict[str, dict]:
    """Grid scores ``{video_id: {"p" [n, K], "covered" [n]}}`` of the videos whose split in
    ``splits`` is one of ``scored``; a video without audio gets ``prior``, uncovered."""
    scores = {}
    for vid, g in sorted(videos.items()):
        if splits[vid] not in scored:
            continue
        n = len(g["y"])
        if vid not in win:
            scores[vid] = {"p": np.tile(prior, (n, 1)), "covered": np.zeros(n, bool)}
            continue
        w = win[vid]
        grid, covered = raw_audio_grid(model, w["x"], w["start"], w["end"], n, prior)
        scores[vid] = {"p": grid, "covered": covered}
    return scores


def train_va_regressor(
    X: np.ndarray,
    Y: np.ndarray,
    Xd: np.ndarray,
    Yd: np.ndarray,
    cfg: Any,
    seed: int,
    device: str = "cpu",
    net_kw: dict[str, Any] | None = None,
) -> tuple[torch.nn.Module, list[dict]]:
    """Adam on 1 - CCC, best epoch by dev CCC (training CCC without a dev set).

    ``X`` [N, samples] windows, ``Y`` [N, 2] mean valence/arousal per window; ``net_kw``: the
    network (:func:`net_keywords`; default AudioCNNLSTM from scratch; its ``init``, a
    ``pretrain_audio`` checkpoint, gives that network with a new 2-output head instead).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net_kw = net_kw or {"net": "cnn_lstm", "net_params": None, "init": None}
    net = build_raw_net(net_kw["net"], 2, net_kw["net_params"], init=net_kw["init"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    Xt, Yt = torch.from_numpy(X[:, None]), torch.from_numpy(Y.astype(np.float32))
    best, best_state, history, stale = -np.inf, None, [], 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.randperm(len(Xt), generator=gen)
        total = 0.0
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            if len(idx) < 2:  # CCC needs at least two samples
                continue
            loss = ccc_loss(torch.tanh(net(Xt[idx].to(device))), Yt[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        A, B = (Xd, Yd) if len(Yd) > 1 else (X, Y)
        pred = torch.from_numpy(predict_va(net, A, device))
        score = 1 - float(ccc_loss(pred, torch.from_numpy(B.astype(np.float32))))
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / len(Xt),
                "val_loss": 1 - score,
                "dev_ccc": score,
            }
        )
        log.info(
            "epoch %d/%d train_loss %.5f dev_ccc %.4f", epoch, cfg.epochs, total / len(Xt), score
        )
        if score > best + 1e-4:
            best, best_state, stale = score, {k: v.clone() for k, v in net.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    net.load_state_dict(best_state)
    return net.eval(), history


def predict_va(
    net: torch.nn.Module, X: np.ndarray, device: str = "cpu", batch_size: int = 64
) -> np.ndarray:
    """Valence/arousal in [-1, 1] of windows ``X`` [N, samples] -> (N, 2) float32."""
    net.eval()
    if not len(X):
        return np.zeros((0, 2), np.float32)
    with torch.no_grad():
        return np.concatenate(
            [
                torch.tanh(net(torch.from_numpy(X[s : s + batch_size, None]).to(device)))
                .cpu()
                .numpy()
                for s in range(0, len(X), batch_size)
            ]
        )


def fit_raw_audio_va(
    videos: dict[str, dict],
    cfg: Any,
    seed: int,
    rate_hz: float,
    device: str = "cpu",
    init: Path | None = None,
    name: str = "cnn_lstm_raw",
) -> tuple[torch.nn.Module, dict[str, dict], dict]:
    """Valence/arousal version of :func:`fit_raw_audio` (``videos`` carry ``va`` [n, 2]);
    with ``cfg.oof_folds >= 2`` the train videos are scored too, out of fold."""
    net_kw = net_keywords(name, cfg, videos, init)
    win = {}
    for v, g in videos.items():
        if g["wave"] is None or not len(g["wave"]):
            continue
        x, start, end = _spans(
            g["wave"], g["rate_hz"], cfg.window_s, cfg.overlap, rate_hz, len(g["va"])
        )
        win[v] = {"x": x, "va": window_va(g["va"], start, end), "start": start, "end": end}
    splits = {v: g["split"] for v, g in videos.items()}
    net, history, Y = _train_raw_va(win, splits, cfg, seed, device, net_kw)
    mean = Y.mean(axis=0).astype(np.float32)
    scores = _score_raw_va(net, win, videos, splits, ("dev", "test"), mean, device)
    report = {
        "model": name,
        "task": "va",
        "init": None if init is None else init.name,
        "train_windows": int(len(Y)),
    }
    if cfg.oof_folds >= 2:
        speakers = {v: g.get("speaker") for v, g in videos.items()}
        views, report["out_of_fold"] = oof_splits(splits, speakers, cfg.oof_folds, cfg.oof_group)
        for view in views:
            fold_net, _, fold_Y = _train_raw_va(win, view, cfg, seed, device, net_kw)
            fold_mean = fold_Y.mean(axis=0).astype(np.float32)
            scores.update(
                _score_raw_va(fold_net, win, videos, view, (HELD_OUT,), fold_mean, device)
            )
    return net, scores, {**report, "history": history, "train_mean": mean.tolist()}


def _stack_va(
    win: dict[str, dict], splits: dict[str, str], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``X`` [N, samples] and their valence/arousal ``Y`` [N, 2] (annotated only)."""
    parts = [w for v, w in sorted(win.items()) if splits[v] == split]
    if not parts:
        return np.zeros((0, 1), np.float32), np.zeros((0, 2), np.float32)
    X, Y = np.concatenate([w["x"] for w in parts]), np.concatenate([w["va"] for w in parts])
    ok = np.isfinite(Y).all(axis=1)
    return X[ok], Y[ok]


def _train_raw_va(
    win: dict[str, dict],
    splits: dict[str, str],
    cfg: Any,
    seed: int,
    device: str,
    net_kw: dict[str, Any],
) -> tuple[torch.nn.Module, list, np.ndarray]:
    """The va network fitted on ``splits``' train windows (early stopping on dev): (net,
    history, the training targets Y [N, 2])."""
    X, Y = _stack_va(win, splits, "train")
    if len(Y) == 0:
        raise NothingToFit("fit_raw_audio: no annotated audio windows in the train split")
    if len(Y) < 2:
        raise PipelineError(
            "fit_raw_audio: fewer than two annotated audio windows in the train split"
        )
    net, history = train_va_regressor(
        X, Y, *_stack_va(win, splits, "dev"), cfg, seed, device, net_kw
    )
    return net, history, Y


def _score_raw_va(
    net: torch.nn.Module,
    win: dict[str, dict],
    videos: dict[str, dict],
    splits: dict[str, str],
    scored: tuple[str, ...],
    mean: np.ndarray,
    device: str,
) -> dict[str, dict]:
    """Grid scores ``{video_id: {"va" [n, 2], "covered" [n]}}`` of the ``scored`` splits'
    videos; a video without audio gets ``mean``, uncovered."""
    scores = {}
    for vid, g in sorted(videos.items()):
        if splits[vid] not in scored:
            continue
        n = len(g["va"])
        if vid not in win:
            scores[vid] = {"va": np.tile(mean, (n, 1)), "covered": np.zeros(n, bool)}
            continue
        w = win[vid]
        grid, covered = grid_scores(predict_va(net, w["x"], device), w["start"], w["end"], n, mean)
        scores[vid] = {"va": grid, "covered": covered}
    return scores
