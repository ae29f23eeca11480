"""The paper's model 4: a 1D CNN + LSTM on raw vocal waveforms, scored on the 5 Hz grid.

Each video's (separated) 16 kHz audio is cut into windows of ``window_s`` seconds with an
``overlap`` of 2/5 of the window (the paper's setting); a window's label is the most
frequent valid 5 Hz label it covers. Training uses the train split, early stopping the dev
split; dev/test window probabilities are averaged back onto the grid like every other model.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.features.windows import window_labels, windows_to_grid
from pipeline.models.audio_cnn_lstm import AudioCNNLSTMClassifier, raw_audio_windows
from pipeline.models.fitting import full_proba

log = logging.getLogger(__name__)


def labelled_windows(wave: np.ndarray, sr: int, y_grid: np.ndarray, rate_hz: float, window_s: float,
                     overlap: float, n_classes: int) -> dict[str, np.ndarray]:
    """Windows of one video with their grid span and label.

    Returns ``x`` [W, samples] float32, ``y`` [W] int (-1 if no labelled bin), ``start`` and
    ``end`` [W] grid bins (end exclusive, clipped to the grid).
    """
    n = len(y_grid)
    x, starts_s = raw_audio_windows(wave, sr, window_s, overlap)
    start = np.clip(np.floor(starts_s * rate_hz + 1e-9).astype(np.int64), 0, n - 1)
    end = np.clip(np.ceil((starts_s + window_s) * rate_hz - 1e-9).astype(np.int64), start + 1, n)
    return {"x": x, "y": window_labels(y_grid, start, end, n_classes), "start": start, "end": end}


def fit_raw_audio(videos: dict[str, dict], cfg: Any, n_classes: int, seed: int, rate_hz: float,
                  device: str = "cpu") -> tuple[AudioCNNLSTMClassifier, dict[str, dict], dict]:
    """Fit on train windows (early stopping on dev) and score dev/test videos on the grid.

    Parameters
    ----------
    videos : ``{video_id: {"wave" [S] or None, "rate_hz", "y" [n] grid labels, "split"}}``;
        videos without audio (``wave`` None) get the training prior and ``covered=False``.
    """
    win = {v: labelled_windows(g["wave"], g["rate_hz"], g["y"], rate_hz, cfg.window_s, cfg.overlap, n_classes)
           for v, g in videos.items() if g["wave"] is not None and len(g["wave"])}

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [w for v, w in sorted(win.items()) if videos[v]["split"] == split]
        if not parts:
            return np.zeros((0, 1), np.float32), np.zeros(0, np.int64)
        return np.concatenate([w["x"] for w in parts]), np.concatenate([w["y"] for w in parts]).astype(np.int64)

    X, y = stack("train")
    if (y >= 0).sum() == 0:
        raise PipelineError("fit_raw_audio: no labelled audio windows in the train split")
    Xd, yd = stack("dev")
    yd = np.where(np.isin(yd, np.unique(y[y >= 0])), yd, -1)  # classes unseen in training: not scored
    model = AudioCNNLSTMClassifier(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, patience=cfg.patience,
                                   class_weight="log", class_weight_r=cfg.class_weight_r, device=device,
                                   random_state=seed)
    model.fit(X, y, Xd if len(yd) else None, yd if len(yd) else None)
    counts = np.bincount(y[y >= 0], minlength=n_classes)
    prior = (counts / counts.sum()).astype(np.float32)
    scores = {}
    for vid, g in sorted(videos.items()):
        if g["split"] not in ("dev", "test"):
            continue
        n = len(g["y"])
        if vid not in win:
            scores[vid] = {"p": np.tile(prior, (n, 1)), "covered": np.zeros(n, bool)}
            continue
        w = win[vid]
        p = full_proba(model.predict_proba(w["x"]), model.classes_, n_classes)
        grid = windows_to_grid(p, w["start"], w["end"], n)
        covered = np.isfinite(grid).all(axis=1)
        grid[~covered] = prior
        scores[vid] = {"p": grid.astype(np.float32), "covered": covered}
    report = {"model": "cnn_lstm_raw", "train_windows": int((y >= 0).sum()), "class_counts": counts.tolist(),
              "missing_classes": [k for k in range(n_classes) if counts[k] == 0],
              "history": getattr(model, "history_", [])}
    return model, scores, report
