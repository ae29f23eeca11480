"""The one input layout of the model-level fusion networks (seed 001 and seed 002 systems).

A fusion network sees a window of ``T`` bins of the 5 Hz grid with a face embedding and an
audio embedding per bin, each with a validity flag (no face detected, no audio). Both
modalities travel in one float tensor so that the shared training loop
(:func:`pipeline.models.lstm.fit_torch_classifier`) batches them like any other input::

    x[b, t] = [face (Dv) | face valid (1) | audio (Da) | audio valid (1)]

A network built on this layout takes ``(dim_v, dim_a, n_out, **params)`` in its constructor
and calls :func:`unpack_inputs` first in ``forward``.
"""

from __future__ import annotations

import numpy as np
import torch


def pack_inputs(
    v: np.ndarray, v_valid: np.ndarray, a: np.ndarray, a_valid: np.ndarray
) -> np.ndarray:
    """Concatenate both modalities of windows into the packed layout.

    Parameters
    ----------
    v : (N, T, Dv) float array
        Face embeddings per 5 Hz bin (any value where ``v_valid`` is False, NaN included).
    v_valid : (N, T) bool array
    a : (N, T, Da) float array
        Audio embeddings per bin.
    a_valid : (N, T) bool array

    Returns
    -------
    (N, T, Dv + 1 + Da + 1) float32 array; invalid bins hold zeros in their embedding.
    """
    v = np.where(v_valid[..., None], v, 0.0)
    a = np.where(a_valid[..., None], a, 0.0)
    return np.concatenate(
        [v, v_valid[..., None], a, a_valid[..., None]], axis=-1, dtype=np.float32
    )


def unpack_inputs(
    x: torch.Tensor, dim_v: int, dim_a: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a packed batch ``x`` [B, T, Dv + 1 + Da + 1] into
    ``(v [B, T, Dv], v_mask [B, T] bool, a [B, T, Da], a_mask [B, T] bool)``."""
    if x.shape[-1] != dim_v + dim_a + 2:
        raise ValueError(
            f"packed inputs have {x.shape[-1]} columns, expected {dim_v} + 1 + {dim_a} + 1"
        )
    v = x[..., :dim_v]
    v_mask = x[..., dim_v] > 0.5
    a = x[..., dim_v + 1 : dim_v + 1 + dim_a]
    a_mask = x[..., -1] > 0.5
    return v, v_mask, a, a_mask
