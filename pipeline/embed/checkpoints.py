"""Strict checking of checkpoints against a model: names, shapes, clear errors naming the file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn


def format_keys(keys: list[str], limit: int = 20) -> str:
    """At most ``limit`` keys, comma-separated, with a count of the rest."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def checked_state_dict(
    model: nn.Module, weights: Mapping[str, object], path: Path, what: str
) -> dict[str, torch.Tensor]:
    """Validate ``weights`` (tensors or numpy arrays) against ``model``; return a state dict.

    ``model`` may live on the meta device (only names, shapes and dtypes are used).
    ``num_batches_tracked`` counters are the only keys allowed to be absent (they do not
    affect inference; Caffe conversions have none); they are filled with zeros. Values are
    cast to the model's dtypes.

    Raises
    ------
    ValueError
        Naming ``path`` and ``what`` it should be, listing missing and unexpected keys,
        values that are not arrays, and shape mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in weights if k not in expected]
    not_array = [
        k
        for k in weights
        if k in expected and not isinstance(weights[k], (np.ndarray, torch.Tensor))
    ]
    bad_shape = [
        f"{k}: file {tuple(weights[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in weights
        if k in expected
        and k not in not_array
        and tuple(weights[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {format_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {format_keys(unexpected)}")
    if not_array:
        problems.append(f"values that are not arrays: {format_keys(not_array)}")
    if bad_shape:
        problems.append(f"shape mismatches ({len(bad_shape)}): {format_keys(bad_shape)}")
    if problems:
        raise ValueError(
            f"{path}: not a {what} checkpoint in the official format; " + "; ".join(problems)
        )
    state = {}
    for k, ref in expected.items():
        if k not in weights:
            state[k] = torch.zeros(ref.shape, dtype=ref.dtype)
            continue
        value = weights[k]
        tensor = torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray) else value
        state[k] = tensor.to(ref.dtype)
    return state


def user_weights(what: str, weights: str | None, hint: str) -> Path:
    """The weights file a user named for a backbone whose weights are not downloadable here.

    Raises
    ------
    PipelineError
        One line naming the backbone and the file (``hint`` says which file is meant).
    """
    from pipeline.errors import PipelineError

    if not weights or not Path(weights).is_file():
        raise PipelineError(f"{what}: weights file {weights!r} not found ({hint})")
    return Path(weights)
