"""Model-level fusion networks: data path, training and scoring shared by every network.

A fusion network reads both modalities' per-video embeddings (``features/faces/<backbone>.h5``
and ``features/audio/<backbone>.h5``) at once. Per video:

1. both embeddings are put on the video's 5 Hz label grid (:func:`grid_embeddings`, the
   bin averaging of ``window_stats``); a video without a modality (its group has the
   ``skipped`` attribute, or no valid row) gets all-invalid bins of that modality;
2. the grid is cut into windows of ``seq_len`` bins every ``hop`` bins (:func:`window_spans`;
   a video shorter than one window gets one window padded with invalid, unlabelled bins);
3. each modality is standardised with the mean and std of the valid training bins, and the
   windows are packed with :func:`pipeline.models.fusion_inputs.pack_inputs` (embedding,
   validity flag, per modality);
4. a window's label is the majority valid label of its bins (``window_labels``), or the mean
   valence/arousal of its annotated bins (``window_va``) for ``base.task: va``.

Training uses the train split, early stopping the dev split, with the shared loop
:func:`pipeline.models.lstm.fit_torch_classifier`: log-weighted cross-entropy (expr) or
1 - CCC of ``tanh`` of the outputs (va). Dev/test windows with at least one valid bin are
scored and averaged back onto the grid (:func:`pipeline.scores.grid_scores`); bins no scored
window covers get the training prior (expr) or mean (va) and ``covered=False``.

Networks live in :data:`NETS` (name -> class). Each has the constructor
``Net(dim_v, dim_a, n_out, **hyper)`` (``hyper``: its entry of ``fit_fusion_net.nets`` in
params.yaml) and ``forward(x [B, T, dim_v + 1 + dim_a + 1]) -> [B, n_out]`` (logits for expr,
raw outputs for va), calling ``unpack_inputs`` first. Adding a network is one line in
:data:`NETS` plus its params entry (params.yaml and ``pipeline.params``).
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.errors import NothingToFit, PipelineError
from pipeline.features.summarise import to_grid
from pipeline.features.windows import window_labels, window_va
from pipeline.io.h5 import SKIPPED, iter_groups_with_attrs
from pipeline.metrics import at_chance
from pipeline.models.attention_fbp import AttentionFBPNet
from pipeline.models.class_weights import log_class_weights
from pipeline.models.conv_lstm_fusion import ConvLSTMFusionNet
from pipeline.models.fusion_inputs import pack_inputs
from pipeline.models.losses import ccc_loss
from pipeline.models.lstm import fit_torch_classifier, fork_rng_devices, predict_logits
from pipeline.scores import grid_scores, payload

log = logging.getLogger(__name__)

# name -> network class; the name is the model folder (models/fit/<name>) and the key of
# fit_fusion_net.nets
NETS: dict[str, type[nn.Module]] = {
    "conv_lstm": ConvLSTMFusionNet,
    "attention_fbp": AttentionFBPNet,
}


# ----------------------------------------------------------------------------- data path
def grid_embeddings(
    emb: dict[str, np.ndarray] | None, n: int, rate_hz: float, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """One modality of one video on its ``n``-bin grid.

    Parameters
    ----------
    emb : ``t`` [T] s, ``x`` [T, D], ``valid`` [T] (an embedding group), or None for a video
        without this modality
    n : int
        Bins of the video's 5 Hz label grid.
    rate_hz : float
        Grid rate.
    dim : int
        Embedding width D (of the file; used when ``emb`` is None).

    Returns
    -------
    (x [n, D] float32, zeros where invalid; valid [n] bool)
    """
    if emb is None or not len(emb["t"]):
        return np.zeros((n, dim), np.float32), np.zeros(n, bool)
    return to_grid(emb["t"], emb["x"], emb["valid"], n, rate_hz)


def window_spans(n: int, seq_len: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``seq_len`` bins over an ``n``-bin grid.

    Returns
    -------
    starts, ends : (W,) int64
        Bins ``[start, end)``: starts ``0, hop, 2 hop, ...`` while a window fits, plus one
        window aligned to the end if the last one stops short of it; ``n < seq_len`` gives
        one window ``[0, n)`` (padded when cut); ``n == 0`` gives none.
    """
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if n <= seq_len:
        return np.array([0]), np.array([n])
    starts = np.arange(0, n - seq_len + 1, hop, dtype=np.int64)
    if starts[-1] + seq_len < n:
        starts = np.append(starts, n - seq_len)
    return starts, starts + seq_len


def cut_windows(x: np.ndarray, valid: np.ndarray, starts: np.ndarray, seq_len: int):
    """Windows ``[start, start + seq_len)`` of ``x`` [n, D] and ``valid`` [n]; bins past the
    end are zeros and invalid. Returns ``(X [W, seq_len, D], V [W, seq_len] bool)``."""
    pad = max(0, int(starts.max(initial=0)) + seq_len - len(x))
    x = np.concatenate([x, np.zeros((pad, x.shape[1]), x.dtype)])
    valid = np.concatenate([valid, np.zeros(pad, bool)])
    idx = starts[:, None] + np.arange(seq_len)[None, :]
    return x[idx], valid[idx]


@dataclass(frozen=True)
class Norm:
    """Per-dimension standardisation of both modalities (from valid training bins)."""

    mean_v: np.ndarray  # [Dv]
    std_v: np.ndarray
    mean_a: np.ndarray  # [Da]
    std_a: np.ndarray


def fit_norm(grids: list[tuple[np.ndarray, ...]]) -> Norm:
    """Mean and std (1 where below 1e-8) of the valid bins of ``(v, v_valid, a, a_valid)``
    grids; a modality without any valid bin gets mean 0 and std 1."""

    def stats(rows: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, dim))
        if not len(x):
            return np.zeros(dim, np.float32), np.ones(dim, np.float32)
        std = np.where(x.std(axis=0) > 1e-8, x.std(axis=0), 1.0)
        return x.mean(axis=0).astype(np.float32), std.astype(np.float32)

    dim_v, dim_a = grids[0][0].shape[1], grids[0][2].shape[1]
    mean_v, std_v = stats([v[ok] for v, ok, _, _ in grids], dim_v)
    mean_a, std_a = stats([a[ok] for _, _, a, ok in grids], dim_a)
    return Norm(mean_v, std_v, mean_a, std_a)


def video_windows(
    v: np.ndarray,
    v_valid: np.ndarray,
    a: np.ndarray,
    a_valid: np.ndarray,
    seq_len: int,
    hop: int,
    norm: Norm,
) -> dict[str, np.ndarray]:
    """Packed windows of one video's grid embeddings.

    Parameters
    ----------
    v, a : (n, Dv), (n, Da) float arrays; v_valid, a_valid : (n,) bool
        The video's embeddings on its grid (:func:`grid_embeddings`).

    Returns
    -------
    ``x`` [W, seq_len, Dv + 1 + Da + 1] float32 (packed, standardised), ``start``/``end``
    [W] grid bins (end clipped to n), ``n_valid`` [W] bins with at least one valid modality.
    """
    n = len(v)
    starts, ends = window_spans(n, seq_len, hop)
    V, Vok = cut_windows((v - norm.mean_v) / norm.std_v, v_valid, starts, seq_len)
    A, Aok = cut_windows((a - norm.mean_a) / norm.std_a, a_valid, starts, seq_len)
    return {
        "x": pack_inputs(V, Vok, A, Aok),
        "start": starts,
        "end": ends,
        "n_valid": (Vok | Aok).sum(axis=1),
    }


def read_videos(faces: Path, audio: Path, labels: Path, task: str) -> dict[str, dict]:
    """The inputs of :func:`fit_fusion_net` from the pipeline's files.

    Parameters
    ----------
    faces, audio : embedding files (``features/faces/<backbone>.h5``, ``features/audio/...``)
    labels : ``data/interim/labels_5hz.h5``
    task : 'expr' or 'va'

    Returns
    -------
    ``{video_id: {"face", "audio", "y" or "va", "split"}}``; a modality group is ``{"t", "x",
    "valid"}``, or None where the group has the ``skipped`` attribute (no such modality).

    Raises
    ------
    PipelineError
        A labelled video has no group in an embedding file.
    """
    key = payload(task)[1]
    emb: dict[str, dict[str, Any]] = {}
    for kind, path in (("face", faces), ("audio", audio)):
        emb[kind] = {
            vid: None if attrs.get(SKIPPED) else g
            for vid, g, attrs in iter_groups_with_attrs(path, ["t", "x", "valid"])
        }
    videos = {}
    for vid, g, attrs in iter_groups_with_attrs(labels, [key]):
        for kind, path in (("face", faces), ("audio", audio)):
            if vid not in emb[kind]:
                raise PipelineError(f"{path}: no embeddings for video {vid!r}; re-run its stage")
        videos[vid] = {
            "face": emb["face"][vid],
            "audio": emb["audio"][vid],
            key: g[key],
            "split": attrs["split"],
        }
    return videos


# ----------------------------------------------------------------------------- the model
@dataclass
class TrainedFusionNet:
    """A trained fusion network with what scoring a new video needs."""

    name: str
    hyper: dict[str, Any]
    dim_v: int
    dim_a: int
    n_out: int
    task: str
    seq_len: int
    hop: int
    rate_hz: float
    norm: Norm
    module: nn.Module

    def window_outputs(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (expr) or tanh valence/arousal (va) of packed windows ``x``
        [W, T, C] -> (W, n_out) float64."""
        if not len(x):
            return np.zeros((0, self.n_out))
        out = predict_logits(self.module, torch.from_numpy(x), batch_size=batch_size, device="cpu")
        out = out.double()
        return (torch.tanh(out) if self.task == "va" else torch.softmax(out, dim=-1)).numpy()

    def video_scores(
        self,
        face: dict[str, np.ndarray] | None,
        audio: dict[str, np.ndarray] | None,
        n: int,
        fallback: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One video's scores on its ``n``-bin grid from its embedding groups (None: no such
        modality): ``(values [n, n_out] float32, covered [n] bool)``; bins no window with a
        valid bin covers get ``fallback``."""
        v, v_ok = grid_embeddings(face, n, self.rate_hz, self.dim_v)
        a, a_ok = grid_embeddings(audio, n, self.rate_hz, self.dim_a)
        w = video_windows(v, v_ok, a, a_ok, self.seq_len, self.hop, self.norm)
        use = w["n_valid"] > 0
        return grid_scores(
            self.window_outputs(w["x"][use]), w["start"][use], w["end"][use], n, fallback
        )

    def save(self, path: str | Path) -> None:
        """Write ``path`` (torch.save of plain values and tensors; reproducible bytes)."""
        record = {
            "name": self.name,
            "hyper": self.hyper,
            "dims": [self.dim_v, self.dim_a, self.n_out],
            "task": self.task,
            "seq_len": self.seq_len,
            "hop": self.hop,
            "rate_hz": self.rate_hz,
            "norm": {f.name: torch.from_numpy(getattr(self.norm, f.name)) for f in fields(Norm)},
            "state_dict": self.module.state_dict(),
        }
        buf = io.BytesIO()
        torch.save(record, buf)
        Path(path).write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> TrainedFusionNet:
        """Inverse of :meth:`save` (on CPU, in eval mode)."""
        record = torch.load(path, map_location="cpu", weights_only=True)
        dim_v, dim_a, n_out = record["dims"]
        module = NETS[record["name"]](dim_v, dim_a, n_out, **record["hyper"])
        module.load_state_dict(record["state_dict"])
        return cls(
            name=record["name"],
            hyper=record["hyper"],
            dim_v=dim_v,
            dim_a=dim_a,
            n_out=n_out,
            task=record["task"],
            seq_len=record["seq_len"],
            hop=record["hop"],
            rate_hz=record["rate_hz"],
            norm=Norm(**{k: t.numpy() for k, t in record["norm"].items()}),
            module=module.eval(),
        )


def va_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CCC of ``tanh(out)`` [B, 2] against valence/arousal ``target`` [B, 2]."""
    return ccc_loss(torch.tanh(out), target)


@dataclass
class Targets:
    """Training targets of a fusion network, from stacked window targets.

    ``y``/``y_dev``: tensors for the shared loop (class indices, -1 = not scored, or [N, 2]
    valence/arousal); ``dev`` the dev targets as an array (classes unseen in training set to
    -1); ``fallback`` the training prior (expr) or mean (va); ``counts`` per class (expr).
    """

    n_out: int
    y: torch.Tensor
    y_dev: torch.Tensor
    dev: np.ndarray
    fallback: np.ndarray
    weights: np.ndarray | None
    loss_fn: Any
    counts: np.ndarray | None


def make_targets(
    T: np.ndarray, Td: np.ndarray, task: str, n_classes: int, class_weight_r: float, who: str
) -> Targets:
    """:class:`Targets` of train ``T`` and dev ``Td`` (``who`` names the model in errors).

    Raises
    ------
    PipelineError
        Fewer than two annotated train windows (va) or two classes (expr).
    """
    if task == "va":
        if len(T) < 2:
            raise PipelineError(f"{who}: fewer than two annotated train windows")
        return Targets(
            2,
            torch.from_numpy(T),
            torch.from_numpy(Td.astype(np.float32)),
            Td,
            T.mean(axis=0).astype(np.float32),
            None,
            va_loss,
            None,
        )
    if len(np.unique(T)) < 2:
        raise PipelineError(f"{who}: train windows hold fewer than 2 classes")
    counts = np.bincount(T, minlength=n_classes)
    Td = np.where(counts[Td] > 0, Td, -1)  # classes unseen in training: not scored
    return Targets(
        n_classes,
        torch.from_numpy(T.astype(np.int64)),
        torch.from_numpy(Td.astype(np.int64)),
        Td,
        (counts / counts.sum()).astype(np.float32),
        log_class_weights(T, n_classes, class_weight_r),
        None,
        counts,
    )


def train_seeded(
    make: Any, X: np.ndarray, Xd: np.ndarray, tg: Targets, cfg: Any, seed: int, device: str
) -> tuple[nn.Module, list[dict], int]:
    """``make()`` (its initial weights drawn from ``seed``) trained by the shared loop on
    ``X``/``tg.y``, early stopping on ``Xd``/``tg.y_dev``; returns (module, history, best
    epoch). ``cfg``: ``epochs``, ``lr``, ``batch_size``, ``patience``."""
    torch_device = torch.device(device)
    with torch.random.fork_rng(devices=fork_rng_devices(torch_device)):
        torch.manual_seed(seed)
        module = make()
        history, best_epoch = fit_torch_classifier(
            module,
            torch.from_numpy(X),
            tg.y,
            torch.from_numpy(Xd) if len(Xd) else None,
            tg.y_dev if len(Xd) else None,
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            patience=cfg.patience,
            tol=1e-4,
            class_weights=tg.weights,
            device=torch_device,
            generator=torch.Generator().manual_seed(seed),
            grad_clip=5.0,
            loss_fn=tg.loss_fn,
        )
    return module.to("cpu").eval(), history, best_epoch


def target_report(tg: Targets, dev_outputs: Any, n_classes: int) -> dict[str, Any]:
    """The report keys of the targets: ``train_mean`` (va), or ``class_counts``,
    ``missing_classes`` and ``dev_at_chance`` (expr; ``dev_outputs(rows)`` gives the
    network's outputs on the dev windows selected by a boolean mask)."""
    if tg.counts is None:
        return {"train_mean": tg.fallback.tolist()}
    labelled = tg.dev >= 0
    return {
        "class_counts": tg.counts.tolist(),
        "missing_classes": [k for k in range(n_classes) if tg.counts[k] == 0],
        "dev_at_chance": (
            at_chance(tg.dev[labelled], dev_outputs(labelled).argmax(1), n_classes)
            if labelled.any()
            else None
        ),
    }


# ----------------------------------------------------------------------------- training
def fit_fusion_net(
    name: str,
    hyper: dict[str, Any],
    videos: dict[str, dict],
    cfg: Any,
    *,
    dims: tuple[int, int],
    task: str,
    n_classes: int,
    seed: int,
    rate_hz: float,
    device: str = "cpu",
) -> tuple[TrainedFusionNet, dict[str, dict], dict]:
    """Train fusion network ``name`` on the train split and score dev/test on the 5 Hz grid.

    Parameters
    ----------
    name : str
        A key of :data:`NETS`.
    hyper : dict
        The network's constructor keywords (its ``fit_fusion_net.nets`` entry).
    videos : dict
        ``{video_id: {"face": group or None, "audio": group or None, "y" [n] or "va" [n, 2]
        (5 Hz labels), "split"}}``; a group is ``{"t", "x", "valid"}`` of an embedding file,
        None where the video lacks the modality.
    cfg : object
        ``seq_len``, ``hop`` (bins), ``epochs``, ``lr``, ``batch_size``, ``patience``,
        ``class_weight_r`` (the ``fit_fusion_net`` params).
    dims : (Dv, Da)
        Embedding widths of the face and audio files.
    task : 'expr' or 'va'
    n_classes : int
        K (expr); the network has K outputs (2 for va).
    seed : int
        Seeds initialisation, dropout and shuffling (base.seed).
    rate_hz : float
        Grid rate (base.label_rate_hz).

    Returns
    -------
    (trained network, ``{video_id: {"p" [n, K] or "va" [n, 2], "covered" [n]}}`` for dev and
    test videos, report with window counts, class counts or training mean, per-epoch history
    (CPU seconds per epoch and per video are logged, not written: same bytes on every run))
    """
    if name not in NETS:
        raise PipelineError(f"unknown fusion network {name!r}; known: {sorted(NETS)}")
    key = "va" if task == "va" else "y"
    grids = {
        vid: (
            *grid_embeddings(g["face"], len(g[key]), rate_hz, dims[0]),
            *grid_embeddings(g["audio"], len(g[key]), rate_hz, dims[1]),
        )
        for vid, g in sorted(videos.items())
    }
    train_ids = [v for v in grids if videos[v]["split"] == "train"]
    for i, what in ((1, "a face"), (3, "audio")):  # grid = (v, v_valid, a, a_valid)
        if not any(grids[v][i].any() for v in train_ids):
            raise NothingToFit(f"fit_fusion_net {name}: no train video has {what} to fuse")
    norm = fit_norm([grids[v] for v in train_ids] or list(grids.values()))
    win = {}
    for vid, grid in grids.items():
        w = video_windows(*grid, cfg.seq_len, cfg.hop, norm)
        lab = videos[vid][key]
        if task == "va":
            w["target"] = window_va(lab, w["start"], w["end"]).astype(np.float32)
        else:
            w["target"] = window_labels(lab, w["start"], w["end"], n_classes)
        win[vid] = w

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = [w for v, w in win.items() if videos[v]["split"] == split]
        if not parts:
            empty_x = np.zeros((0, cfg.seq_len, dims[0] + dims[1] + 2), np.float32)
            return empty_x, np.zeros((0, 2) if task == "va" else 0)
        X = np.concatenate([w["x"] for w in parts])
        T = np.concatenate([w["target"] for w in parts])
        ok = np.concatenate([w["n_valid"] > 0 for w in parts])
        ok &= np.isfinite(T).all(axis=1) if task == "va" else T >= 0
        return X[ok], T[ok]

    X, T = stack("train")
    Xd, Td = stack("dev")
    tg = make_targets(T, Td, task, n_classes, cfg.class_weight_r, f"fit_fusion_net {name}")
    fallback = tg.fallback
    start_cpu = time.process_time()
    module, history, best_epoch = train_seeded(
        lambda: NETS[name](dims[0], dims[1], tg.n_out, **hyper), X, Xd, tg, cfg, seed, device
    )
    train_cpu = time.process_time() - start_cpu
    net = TrainedFusionNet(
        name=name,
        hyper=dict(hyper),
        dim_v=dims[0],
        dim_a=dims[1],
        n_out=tg.n_out,
        task=task,
        seq_len=cfg.seq_len,
        hop=cfg.hop,
        rate_hz=rate_hz,
        norm=norm,
        module=module,
    )

    scores, start_cpu = {}, time.process_time()
    scored = [v for v in sorted(videos) if videos[v]["split"] in ("dev", "test")]
    for vid in scored:
        w, n = win[vid], len(videos[vid][key])
        use = w["n_valid"] > 0
        values, covered = grid_scores(
            net.window_outputs(w["x"][use]), w["start"][use], w["end"][use], n, fallback
        )
        scores[vid] = {"va" if task == "va" else "p": values, "covered": covered}
    score_cpu = time.process_time() - start_cpu

    report: dict[str, Any] = {
        "model": name,
        "task": task,
        "hyper": dict(hyper),
        "train_windows": int(len(T)),
        "dev_windows": int(len(Td)),
        "history": history,
        "best_epoch": best_epoch,
        "videos_without_face": sorted(v for v, g in videos.items() if not grids[v][1].any()),
        "videos_without_audio": sorted(v for v, g in videos.items() if not grids[v][3].any()),
    }
    report |= target_report(tg, lambda rows: net.window_outputs(Xd[rows]), n_classes)
    log.info(
        "fit_fusion_net %s: %d train / %d dev windows, %d epochs (best %d), %.2f CPU s per "
        "epoch, %.3f CPU s per scored video (logged only: the outputs stay the same bytes)",
        name,
        len(T),
        len(Td),
        len(history),
        best_epoch,
        train_cpu / max(len(history), 1),
        score_cpu / max(len(scored), 1),
    )
    return net, scores, report
