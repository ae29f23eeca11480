"""Seed 003 (Adhikari & Joshi): end-to-end feature-level fusion of faces and raw audio.

Each video is cut into segments of ``segment_s`` seconds (the paper: 2 s). A segment's input
is its raw audio (the separated vocals by default) and ``faces_per_segment`` aligned faces
sampled evenly from the valid faces ``detect_faces`` found in it, made 48 x 48 grey. The
network (:class:`FeatureFusionNet`) runs the visual branch (seed 003's VGG blocks,
:class:`~pipeline.models.vgg_faces.VGGFaceNet`) on every face and averages the features of
the valid ones, runs the audio branch (:class:`~pipeline.models.segment_audio.
SegmentAudioNet`) on the audio, concatenates both features and maps them through a dense
layer to the classes (or to valence/arousal). Both branches start from their pre-training
checkpoints (``pretrain_faces`` on FER-2013, ``pretrain_audio`` on EmoDB) where those were
trained, with their first ``freeze_blocks`` conv blocks kept fixed; their classifiers are
dropped.

A segment's label is the majority valid 5 Hz label it covers (the mean valence/arousal for
``base.task: va``); dev/test segment outputs are averaged back onto the 5 Hz grid like every
other model's, so SWF/MCWF fuse this model with the others.

Segments are packed into one float row (audio samples, then the faces' pixels, then one
validity flag per face) so the shared training loop
(:func:`pipeline.models.lstm.fit_torch_classifier`) can batch them like any tensor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from pipeline.errors import NothingToFit, PipelineError
from pipeline.features.windows import window_labels, window_va
from pipeline.models.checkpoint import read_record
from pipeline.models.fusion_net import make_targets, target_report, train_seeded
from pipeline.models.lstm import predict_logits
from pipeline.models.raw_audio import grid_span
from pipeline.models.segment_audio import SegmentAudioNet
from pipeline.models.vgg_faces import FACE_SIDE_PX, VGGFaceNet, grey_faces
from pipeline.scores import grid_scores

log = logging.getLogger(__name__)

FACE_PIXELS = FACE_SIDE_PX * FACE_SIDE_PX
READ_CHUNK = 512  # face crops read from HDF5 at a time (memory stays bounded per video)


# ----------------------------------------------------------------------------- the network
class FeatureFusionNet(nn.Module):
    """Visual + audio branches, their features concatenated, a dense layer, the outputs.

    Parameters
    ----------
    n_outputs : int
        K classes (expr) or 2 (valence, arousal).
    face, audio : dict
        Constructor keywords of the branches (``init_kwargs`` of a pre-trained
        :class:`VGGFaceNet` / :class:`SegmentAudioNet`).
    samples : int
        Audio samples per segment.
    faces_per_segment : int
    hidden : int, default=256
    dropout : float, default=0.25
    freeze_face_blocks, freeze_audio_blocks : int, default=0
        The first conv blocks of a branch whose weights stay fixed (and whose BatchNorm
        statistics stay those of pre-training: they remain in eval mode).

    Shapes
    ------
    input : (B, samples + faces_per_segment * 48 * 48 + faces_per_segment) packed rows
        (:func:`pack_segments`)
    output : (B, n_outputs)
    """

    def __init__(
        self,
        n_outputs: int,
        face: dict[str, Any],
        audio: dict[str, Any],
        samples: int,
        faces_per_segment: int,
        hidden: int = 256,
        dropout: float = 0.25,
        freeze_face_blocks: int = 0,
        freeze_audio_blocks: int = 0,
    ):
        super().__init__()
        self.init_kwargs = dict(
            n_outputs=n_outputs,
            face=dict(face),
            audio=dict(audio),
            samples=samples,
            faces_per_segment=faces_per_segment,
            hidden=hidden,
            dropout=dropout,
            freeze_face_blocks=freeze_face_blocks,
            freeze_audio_blocks=freeze_audio_blocks,
        )
        self.face = VGGFaceNet(**face)
        self.audio = SegmentAudioNet(**audio)
        self.samples, self.n_faces = samples, faces_per_segment
        self.top = nn.Sequential(
            nn.Linear(self.face.dim + self.audio.dim, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_outputs),
        )
        self.frozen = [
            *self.face.blocks[:freeze_face_blocks],
            *self.audio.blocks[:freeze_audio_blocks],
        ]
        for block in self.frozen:
            block.requires_grad_(False)

    def train(self, mode: bool = True) -> FeatureFusionNet:
        super().train(mode)
        for block in self.frozen:
            block.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, f = x.shape[0], self.samples, self.n_faces
        audio = self.audio.features(x[:, :s])
        faces = x[:, s : s + f * FACE_PIXELS].reshape(b * f, 1, FACE_SIDE_PX, FACE_SIDE_PX)
        valid = x[:, s + f * FACE_PIXELS :]  # [B, F] 0/1
        feats = self.face.features(faces).reshape(b, f, -1)
        visual = (feats * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1.0)
        return self.top(torch.cat([visual, audio], dim=1))


def load_branch(path: Path, arch: str, pretrained: bool) -> tuple[dict, dict | None, str]:
    """A branch's architecture, its pre-trained weights (None: random initialisation) and
    where they came from, from a pretrain checkpoint (trained, or the skip record)."""
    record = read_record(path)
    if record["arch"] != arch:
        raise PipelineError(f"{path}: holds a {record['arch']}, not a {arch}")
    if record["skipped"]:
        return record["init_kwargs"], None, f"random (pre-training skipped: {record['skipped']})"
    if not pretrained:
        return record["init_kwargs"], None, "random (fit_feature_fusion.pretrained: false)"
    body = {k: v for k, v in record["state_dict"].items() if not k.startswith("head.")}
    return record["init_kwargs"], body, f"{path.name}: {record['corpus']}"


# ----------------------------------------------------------------------------- data path
def segment_starts(duration_s: float, segment_s: float, overlap: float) -> np.ndarray:
    """Start times (s) of segments covering ``[0, duration_s)``: every ``segment_s * (1 -
    overlap)`` seconds, at least one."""
    hop = segment_s * (1.0 - overlap)
    n = 1 + int(np.ceil(max(0.0, duration_s - segment_s) / hop - 1e-9))
    return np.arange(n) * hop


def video_faces(path: Path, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """``(t [V] s, grey faces uint8 [V, 48, 48])`` of a video's valid face crops, read in
    chunks of :data:`READ_CHUNK` crops."""
    with h5py.File(path, "r") as f:
        g = f[video_id]
        t, valid = g["t"][()], g["valid"][()].astype(bool)
        idx = np.flatnonzero(valid)
        grey = [
            grey_faces(g["faces"][idx[i : i + READ_CHUNK]]) for i in range(0, len(idx), READ_CHUNK)
        ]
    empty = np.zeros((0, FACE_SIDE_PX, FACE_SIDE_PX), np.uint8)
    return t[idx], np.concatenate(grey) if grey else empty


def pack_segments(
    wave: np.ndarray | None,
    sr: int,
    face_t: np.ndarray,
    faces: np.ndarray,
    starts_s: np.ndarray,
    segment_s: float,
    n_faces: int,
) -> np.ndarray:
    """Packed segment rows (see :class:`FeatureFusionNet`) of one video.

    Parameters
    ----------
    wave : (S,) float audio at ``sr`` Hz, or None (no audio: zeros)
    face_t, faces : times (s) and grey 48 x 48 crops of the video's valid faces
    starts_s : (W,) segment start times

    Returns
    -------
    (W, samples + n_faces * 2304 + n_faces) float32; faces are sampled evenly from those in
    ``[start, start + segment_s)``, a segment with fewer than ``n_faces`` has the rest
    flagged invalid.
    """
    samples = int(round(segment_s * sr))
    out = np.zeros((len(starts_s), samples + n_faces * (FACE_PIXELS + 1)), np.float32)
    for i, s in enumerate(starts_s):
        if wave is not None:
            a = wave[int(round(s * sr)) : int(round(s * sr)) + samples]
            out[i, : len(a)] = a
        inside = np.flatnonzero((face_t >= s) & (face_t < s + segment_s))
        pick = (
            np.unique(inside[np.linspace(0, len(inside) - 1, n_faces).round().astype(int)])
            if len(inside)
            else inside
        )
        for j, k in enumerate(pick):
            at = samples + j * FACE_PIXELS
            out[i, at : at + FACE_PIXELS] = faces[k].reshape(-1)
            out[i, samples + n_faces * FACE_PIXELS + j] = 1.0
    return out


def video_inputs(
    g: dict, cfg: Any, sr: int, rate_hz: float, n_classes: int, task: str
) -> dict[str, np.ndarray]:
    """One video's packed segments ``x``, their grid span ``start``/``end`` and ``target``
    (class index, -1 = none; or [W, 2] valence/arousal, NaN = none)."""
    key = "va" if task == "va" else "y"
    n = len(g[key])
    starts = segment_starts(n / rate_hz, cfg.segment_s, cfg.overlap)
    x = pack_segments(
        g["wave"], sr, g["face_t"], g["faces"], starts, cfg.segment_s, cfg.faces_per_segment
    )
    start, end = grid_span(starts, cfg.segment_s, rate_hz, n)
    target = (
        window_va(g[key], start, end).astype(np.float32)
        if task == "va"
        else window_labels(g[key], start, end, n_classes)
    )
    return {"x": x, "start": start, "end": end, "target": target}


# ----------------------------------------------------------------------------- training
def fit_feature_fusion(
    videos: dict[str, dict],
    cfg: Any,
    face_ckpt: Path,
    audio_ckpt: Path,
    *,
    n_classes: int,
    seed: int,
    rate_hz: float,
    task: str = "expr",
    device: str = "cpu",
) -> tuple[FeatureFusionNet, dict[str, dict], dict]:
    """Train on train-split segments (early stopping on dev) and score dev/test on the grid.

    Parameters
    ----------
    videos : ``{video_id: {"wave" [S] or None, "rate_hz", "face_t" [V], "faces" [V, 48, 48]
        uint8, "y" [n] or "va" [n, 2] (5 Hz labels), "split"}}``
    cfg : the ``fit_feature_fusion`` params
    face_ckpt, audio_ckpt : the ``pretrain_faces`` / ``pretrain_audio`` checkpoints

    Returns
    -------
    (network, ``{video_id: {"p" [n, K] or "va" [n, 2], "covered" [n]}}`` of dev/test videos,
    report)

    Raises
    ------
    NothingToFit
        No train video has a face, or none has audio (one modality: nothing to fuse).
    """
    train = [v for v, g in videos.items() if g["split"] == "train"]
    if not any(len(videos[v]["face_t"]) for v in train):
        raise NothingToFit("fit_feature_fusion: no train video has a face to fuse")
    if not any(videos[v]["wave"] is not None for v in train):
        raise NothingToFit("fit_feature_fusion: no train video has audio to fuse")
    rates = {g["rate_hz"] for g in videos.values() if g["wave"] is not None}
    face_kw, face_w, face_from = load_branch(face_ckpt, "VGGFaceNet", cfg.pretrained)
    audio_kw, audio_w, audio_from = load_branch(audio_ckpt, "SegmentAudioNet", cfg.pretrained)
    sr = int(audio_kw["rate_hz"])
    if rates - {sr}:
        raise PipelineError(
            f"fit_feature_fusion: audio at {sorted(rates)} Hz, the audio branch expects {sr} Hz "
            "(extract_audio.rate_hz and pretrain_audio must agree)"
        )
    win = {
        v: video_inputs(g, cfg, sr, rate_hz, n_classes, task) for v, g in sorted(videos.items())
    }

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [w for v, w in win.items() if videos[v]["split"] == split]
        if not parts:
            return np.zeros((0, 1), np.float32), np.zeros((0, 2) if task == "va" else 0)
        X = np.concatenate([w["x"] for w in parts])
        T = np.concatenate([w["target"] for w in parts])
        ok = np.isfinite(T).all(axis=1) if task == "va" else T >= 0
        return X[ok], T[ok]

    X, T = stack("train")
    Xd, Td = stack("dev")
    tg = make_targets(T, Td, task, n_classes, cfg.class_weight_r, "fit_feature_fusion")

    def make() -> FeatureFusionNet:
        net = FeatureFusionNet(
            tg.n_out,
            face_kw,
            audio_kw,
            samples=int(round(cfg.segment_s * sr)),
            faces_per_segment=cfg.faces_per_segment,
            hidden=cfg.hidden,
            dropout=cfg.dropout,
            freeze_face_blocks=cfg.freeze_blocks if face_w is not None else 0,
            freeze_audio_blocks=cfg.freeze_blocks if audio_w is not None else 0,
        )
        for branch, weights in ((net.face, face_w), (net.audio, audio_w)):
            if weights is not None:
                branch.load_state_dict(weights, strict=False)  # the head is new
        return net

    net, history, best_epoch = train_seeded(make, X, Xd, tg, cfg, seed, device)

    scores = {}
    for vid in sorted(videos):
        if videos[vid]["split"] not in ("dev", "test"):
            continue
        w, n = win[vid], len(videos[vid]["va" if task == "va" else "y"])
        values, covered = grid_scores(
            segment_outputs(net, w["x"], task), w["start"], w["end"], n, tg.fallback
        )
        scores[vid] = {"va" if task == "va" else "p": values, "covered": covered}
    report: dict[str, Any] = {
        "model": "feature_fusion",
        "task": task,
        "init": {"faces": face_from, "audio": audio_from},
        "train_segments": int(len(T)),
        "dev_segments": int(len(Td)),
        "history": history,
        "best_epoch": best_epoch,
        "videos_without_face": sorted(v for v, g in videos.items() if not len(g["face_t"])),
        "videos_without_audio": sorted(v for v, g in videos.items() if g["wave"] is None),
    }
    report |= target_report(tg, lambda rows: segment_outputs(net, Xd[rows], task), n_classes)
    return net, scores, report


def save_feature_fusion(net: FeatureFusionNet, path: str | Path) -> None:
    """Write ``net`` (constructor keywords + state dict; reproducible bytes)."""
    from pipeline.models.persist import save_torch

    save_torch({"init_kwargs": net.init_kwargs, "state_dict": net.state_dict()}, path)


def load_feature_fusion(path: str | Path) -> FeatureFusionNet:
    """Inverse of :func:`save_feature_fusion` (on CPU, in eval mode)."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    net = FeatureFusionNet(**record["init_kwargs"])
    net.load_state_dict(record["state_dict"])
    return net.eval()


def segment_outputs(net: FeatureFusionNet, x: np.ndarray, task: str) -> np.ndarray:
    """Class probabilities (expr) or tanh valence/arousal (va) of packed segments ``x``
    [W, C] -> (W, n_out) float64."""
    if not len(x):
        return np.zeros((0, net.init_kwargs["n_outputs"]))
    out = predict_logits(net, torch.from_numpy(x), batch_size=64, device="cpu").double()
    return (torch.tanh(out) if task == "va" else torch.softmax(out, dim=-1)).numpy()
