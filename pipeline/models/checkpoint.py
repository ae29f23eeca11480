"""Checkpoints of the pre-trained networks (``pretrain_faces``, ``pretrain_audio``,
``pretrain_vggish``).

A checkpoint is one ``torch.save`` file of plain values and tensors (reproducible bytes,
``weights_only`` loading): ``arch`` (class name), ``init_kwargs``, ``state_dict``,
``classes`` (the pre-training corpus' class names, in output order), ``corpus`` and
``skipped``: None for a trained network, or why there was no corpus; the network is then the
untrained, seeded initialisation. The stages after it start from random weights there
(``fit_feature_fusion``) or say clearly that they need a trained one (the ``vgg_fer``
backbone, ``fit_raw_audio.pretrained``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.io.atomic import atomic_path, write_json
from pipeline.models.segment_audio import SegmentAudioNet
from pipeline.models.vgg_faces import VGGFaceNet

log = logging.getLogger(__name__)

ARCHS: dict[str, type[nn.Module]] = {"VGGFaceNet": VGGFaceNet, "SegmentAudioNet": SegmentAudioNet}


def save_checkpoint(
    path: str | Path,
    module: nn.Module,
    classes: list[str],
    corpus: str,
    skipped: str | None = None,
) -> None:
    """Write a network (see the module docstring) with reproducible bytes; ``skipped`` (why
    there was no corpus) marks an untrained, seeded initialisation."""
    record = {
        "arch": type(module).__name__,
        "init_kwargs": {
            k: list(v) if isinstance(v, tuple) else v for k, v in module.init_kwargs.items()
        },
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "classes": list(classes),
        "corpus": corpus,
        "skipped": skipped,
    }
    buf = io.BytesIO()
    torch.save(record, buf)
    Path(path).write_bytes(buf.getvalue())


def save_pretraining(
    model: Path, report: Path, net: nn.Module, classes: list[str], corpus: str, result: dict
) -> None:
    """The outputs of a pretrain stage: the checkpoint (marked ``skipped`` when ``result``
    says why there was no corpus) and the report ``result``."""
    if "skipped" in result:
        log.warning("pre-training on %s skipped: %s", corpus, result["skipped"])
    with atomic_path(model) as tmp:
        save_checkpoint(tmp, net, classes, corpus, result.get("skipped"))
    write_json(report, result)


def read_record(path: str | Path) -> dict:
    """The checkpoint's record (see the module docstring).

    Raises
    ------
    PipelineError
        No such file.
    """
    if not Path(path).is_file():
        raise PipelineError(f"{path}: no pre-trained checkpoint (run its pretrain stage)")
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_skipped(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` was not trained, or None for a trained network."""
    return read_record(path)["skipped"]


def load_checkpoint(
    path: str | Path, arch: str | type[nn.Module] | None = None, trained: bool = True
) -> tuple[nn.Module, list[str]]:
    """(network in eval mode on the CPU, its class names) of a checkpoint.

    Parameters
    ----------
    arch : the class name the checkpoint must hold (None: any of :data:`ARCHS`), or the class
        itself (a network outside :data:`ARCHS`, e.g. seed 002's VGGish, which this module
        does not import)
    trained : refuse an untrained checkpoint (a pre-training that had no corpus)

    Raises
    ------
    PipelineError
        The file is missing, holds another architecture, or (``trained``) was not trained.
    """
    record = read_record(path)
    if trained and record["skipped"]:
        raise PipelineError(f"{path}: pre-training was skipped ({record['skipped']})")
    cls = arch if isinstance(arch, type) else ARCHS.get(record["arch"])
    name = arch.__name__ if isinstance(arch, type) else arch
    if (name is not None and record["arch"] != name) or cls is None:
        raise PipelineError(f"{path}: holds a {record['arch']}, not a {name or list(ARCHS)}")
    module = cls(**record["init_kwargs"])
    module.load_state_dict(record["state_dict"])
    return module.eval(), list(record["classes"])


def with_new_head(module: nn.Module, n_out: int) -> nn.Module:
    """``module`` with its output layer replaced by a fresh one of ``n_out`` outputs (the
    classifier of the pre-training corpus is dropped; everything before it is kept)."""
    module.head = nn.Linear(module.head.in_features, n_out)
    module.init_kwargs = {**module.init_kwargs, "n_classes": n_out}
    return module
