"""Training losses shared by the torch models."""

from __future__ import annotations

import torch


def ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean concordance correlation over the columns of a batch (population moments).

    ``pred``, ``target``: (B, D) with B >= 2. The loss of the LSTM/CCC valence-arousal papers.
    """
    mp, mt = pred.mean(0), target.mean(0)
    vp, vt = pred.var(0, unbiased=False), target.var(0, unbiased=False)
    cov = ((pred - mp) * (target - mt)).mean(0)
    return 1 - (2 * cov / (vp + vt + (mp - mt) ** 2 + 1e-8)).mean()
