"""Seed 002's audio branch trained here: VGGish (the sequence variant) on EmoDB.

Schoneveld et al. (RECOLA) feed their fusion network with VGGish pre-trained on AudioSet, in
a sequence geometry: 16 kHz audio, 40 ms windows with a 40 ms hop, 128 mel bands from 125 to
7500 Hz, conv blocks 64-128-256-512 and FC 4096-4096-128 applied at every time step of the
last feature map, so the network yields one 128-d vector per 16 frames (0.64 s). The AudioSet
weights cannot be downloaded on these machines (and the released ones are for the official
geometry, 64 bands and 0.96 s examples), so this module trains that geometry on EmoDB's seven
emotions, speaker-independent, as seed 003's audio model is trained (``pretrain_audio``):
dev speakers pick the epoch, test speakers are reported, each utterance scored once.

The network (:class:`pipeline.embed.vggish.VGGishSeqNet`) is the ``vggish_seq`` backbone of
``embed_audio`` (:func:`pipeline.embed.vggish.embed_vggish_seq`), whose embeddings the fusion
networks read (``fit_fusion_net.audio: audio/vggish_seq``).

What differs from the paper besides the training corpus: each log-mel band is standardised
with the mean and standard deviation of the training segments (stored in the checkpoint), since
a VGG without batch normalisation trained from scratch does not move on raw log-mel values;
the classifier of pre-training averages the 128-d sequence over time, then dropout and a
linear layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.embed.vggish import (
    SAMPLE_RATE_HZ,
    SEQ_FRAME_S,
    STEP_FRAMES,
    VGGishSeqNet,
    seq_log_mel,
)
from pipeline.errors import PipelineError
from pipeline.models.pretrain import pretrain, seeded_module


def pretrain_vggish(cfg: Any, root: Path, device: str = "cpu") -> tuple[VGGishSeqNet, list, dict]:
    """Train :class:`VGGishSeqNet` on EmoDB segments (the epoch by dev-speaker loss).

    Parameters
    ----------
    cfg : the ``pretrain_vggish`` params (dev_speakers, test_speakers, segment_s, dropout,
        the training keys, seed)
    root : EmoDB's folder (``wav/*.wav`` or ``*.wav``)

    Returns
    -------
    (network, EmoDB class names, report with utterance-level accuracy, UAR and macro F1 of each
    split and the per-epoch history); ``{"skipped": why}`` and the untrained network without
    EmoDB wav files.
    """
    from pipeline.data.adapters import EMODB_CODES
    from pipeline.models.pretrain_audio import emodb_report, emodb_segments

    classes = sorted(EMODB_CODES.values())
    module = seeded_module(cfg.seed, lambda: VGGishSeqNet(len(classes), dropout=cfg.dropout))
    if not any((root / "wav").glob("*.wav")) and not any(root.glob("*.wav")):
        return module, classes, {"skipped": f"{root}: no EmoDB wav files (wav/*.wav)"}
    segments, classes = emodb_segments(
        root, cfg.dev_speakers, cfg.test_speakers, SAMPLE_RATE_HZ, cfg.segment_s
    )
    if "train" not in segments:
        raise PipelineError(f"{root}: every speaker is in pretrain_vggish.dev/test_speakers")
    data = {
        split: (np.stack([seq_log_mel(w, SAMPLE_RATE_HZ) for w in x])[:, None], y, u)
        for split, (x, y, u) in segments.items()
    }
    if data["train"][0].shape[2] < STEP_FRAMES:
        raise PipelineError(
            f"pretrain_vggish.segment_s: {cfg.segment_s} s gives fewer than {STEP_FRAMES} "
            f"frames of {SEQ_FRAME_S * 1000:.0f} ms"
        )
    module.set_input_scaling(data["train"][0])
    dev = data.get("dev")
    history, best = pretrain(
        module,
        data["train"][:2],
        None if dev is None else dev[:2],
        cfg,
        cfg.seed,
        device,
    )
    module.to("cpu").eval()
    return module, classes, emodb_report(module, cfg, data, history, best)
