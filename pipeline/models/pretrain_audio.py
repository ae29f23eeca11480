"""Seed 003's audio pre-training: the raw-audio segment model on EmoDB (speaker-independent).

Dev speakers pick the epoch, test speakers are reported; scores are per utterance (the mean of
its segments' class probabilities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.models.pretrain import nan_to_none, pretrain, seeded_module, split_metrics
from pipeline.models.segment_audio import SegmentAudioNet


def emodb_segments(
    root: str | Path,
    dev_speakers: tuple[str, ...],
    test_speakers: tuple[str, ...],
    rate_hz: int,
    segment_s: float,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[str]]:
    """EmoDB utterances as fixed-length segments for the seed-003 audio model.

    Each utterance is resampled to ``rate_hz`` and cut into ``segment_s`` segments with half a
    segment of overlap (the last zero-padded; an utterance shorter than a segment gives one).

    Returns
    -------
    ``{split: (segments float32 [N, samples], labels int64 [N], utterance index int64 [N])}``
    and the class names (EmoDB's seven, in a fixed order).
    """
    from pipeline.audio.extract import extract_audio
    from pipeline.data.adapters import EMODB_CODES, emodb_items
    from pipeline.data.manifest import Report
    from pipeline.models.audio_cnn_lstm import raw_audio_windows

    classes = sorted(EMODB_CODES.values())
    items = emodb_items(Path(root), tuple(classes), dev_speakers, test_speakers, Report())
    parts: dict[str, list] = {}
    for n, item in enumerate(items):
        wave, _ = extract_audio(item.media_path, rate_hz)
        x, _ = raw_audio_windows(wave, rate_hz, segment_s, 0.5)
        parts.setdefault(item.split, []).append(
            (x, np.full(len(x), classes.index(item.clip_label)), np.full(len(x), n))
        )
    out = {
        split: tuple(np.concatenate([p[i] for p in rows]) for i in range(3))
        for split, rows in parts.items()
    }
    return {
        s: (x.astype(np.float32), y.astype(np.int64), u) for s, (x, y, u) in out.items()
    }, classes


def pretrain_audio(
    cfg: Any, root: Path, device: str = "cpu"
) -> tuple[SegmentAudioNet, list[str], dict]:
    """Train seed 003's audio model on EmoDB segments (the epoch by dev-speaker loss).

    Parameters
    ----------
    cfg : the ``pretrain_audio`` params (dev_speakers, test_speakers, segment_s, the
        architecture, the training keys, rate_hz, seed)
    root : EmoDB's folder (``wav/*.wav`` or ``*.wav``)

    Returns
    -------
    (network, EmoDB class names, report with utterance-level accuracy, UAR and macro F1 of
    each split and the per-epoch history); ``{"skipped": why}`` and the untrained network
    without EmoDB wav files.
    """
    from pipeline.data.adapters import EMODB_CODES
    from pipeline.models.audio_cnn_lstm import augment_waveforms

    classes = sorted(EMODB_CODES.values())
    module = seeded_module(
        cfg.seed,
        lambda: SegmentAudioNet(
            len(classes),
            rate_hz=cfg.rate_hz,
            kernel_ms=cfg.kernel_ms,
            filters=cfg.filters,
            pools=cfg.pools,
            lstm_hidden=cfg.lstm_hidden,
            dropout=cfg.dropout,
        ),
    )
    if not any((root / "wav").glob("*.wav")) and not any(root.glob("*.wav")):
        return module, classes, {"skipped": f"{root}: no EmoDB wav files (wav/*.wav)"}
    data, classes = emodb_segments(
        root, cfg.dev_speakers, cfg.test_speakers, cfg.rate_hz, cfg.segment_s
    )
    if "train" not in data:
        raise PipelineError(f"{root}: every speaker is in pretrain_audio.dev/test_speakers")
    dev = data.get("dev")
    history, best = pretrain(
        module,
        (data["train"][0][:, None], data["train"][1]),
        None if dev is None else (dev[0][:, None], dev[1]),
        cfg,
        cfg.seed,
        device,
        augment_waveforms if cfg.augment else None,
    )
    module.to("cpu").eval()
    return module, classes, emodb_report(module, cfg, data, history, best, channel=True)


def emodb_report(
    module: torch.nn.Module,
    cfg: Any,
    data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    history: list[dict],
    best: int,
    channel: bool = False,
) -> dict:
    """The report of an EmoDB pre-training: speakers, epochs, and the utterance-level accuracy,
    UAR and macro F1 of each split of ``data`` (``{split: (inputs, labels, utterance)}``;
    ``channel``: the inputs need a channel axis added first)."""
    return {
        "corpus": "EmoDB",
        "speakers": {"dev": list(cfg.dev_speakers), "test": list(cfg.test_speakers)},
        "train_segments": int(len(data["train"][1])),
        "epochs_run": len(history),
        "best_epoch": best,
        "splits": {
            s: split_metrics(module, torch.from_numpy(x[:, None] if channel else x), y, groups)
            for s, (x, y, groups) in data.items()
        },
        "history": nan_to_none(history),
    }
