"""Seed 003's audio model: conv blocks with 5 ms kernels on a raw 16 kHz segment, then an LSTM.

Adhikari & Joshi (eNTERFACE'05): 2 s segments (32,000 samples at 16 kHz), each normalised to
zero mean and unit variance; three blocks of [Conv1d with 5 ms kernels, 32 filters,
BatchNorm, max-pool]; an LSTM whose last state (256) is the audio feature of the fusion
network; a softmax classifier on top for pre-training (on EmoDB).

The paper gives the kernel in milliseconds, not samples; here each block's kernel spans 5 ms
at that block's own input rate (80 samples at 16 kHz, then ``80 / pool``, at least 3 taps),
and the pools (8, 8, 8) give the LSTM 62 steps of 32 ms per 2 s segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


class SegmentAudioNet(nn.Module):
    """Raw-audio conv blocks + LSTM + linear classifier.

    Parameters
    ----------
    n_classes : int
        Outputs K.
    rate_hz : int, default=16000
        Sample rate the kernels are sized for.
    kernel_ms : float, default=5.0
        Kernel span of every block at its input rate.
    filters : int, default=32
        Filters per block (the paper: 32).
    pools : sequence of int, default=(8, 8, 8)
        Max-pool size of each block.
    lstm_hidden : int, default=256
        LSTM size: the audio feature (the paper: 256).
    dropout : float, default=0.25

    Shapes
    ------
    input : (B, samples) or (B, 1, samples) float, ``samples >= prod(pools)``
    output : (B, K) logits; :meth:`features` gives (B, lstm_hidden)
    """

    def __init__(
        self,
        n_classes: int,
        rate_hz: int = 16000,
        kernel_ms: float = 5.0,
        filters: int = 32,
        pools: Sequence[int] = (8, 8, 8),
        lstm_hidden: int = 256,
        dropout: float = 0.25,
    ):
        super().__init__()
        pools = tuple(int(p) for p in pools)
        self.init_kwargs = dict(
            n_classes=n_classes,
            rate_hz=rate_hz,
            kernel_ms=kernel_ms,
            filters=filters,
            pools=pools,
            lstm_hidden=lstm_hidden,
            dropout=dropout,
        )
        layers, c_in, rate = [], 1, float(rate_hz)
        for pool in pools:
            k = max(3, int(round(kernel_ms * rate / 1000.0))) | 1  # odd: 'same' length
            layers.append(
                nn.Sequential(
                    nn.Conv1d(c_in, filters, k, padding=k // 2, bias=False),
                    nn.BatchNorm1d(filters),
                    nn.ReLU(inplace=True),
                    nn.MaxPool1d(pool),
                )
            )
            c_in, rate = filters, rate / pool
        self.blocks = nn.Sequential(*layers)  # blocks[i]: block i (frozen as a unit)
        self.min_samples = int(np.prod(pools))
        self.lstm = nn.LSTM(filters, lstm_hidden, batch_first=True)
        self.dim = lstm_hidden
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(lstm_hidden, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The LSTM's last hidden state (B, lstm_hidden) of raw segments."""
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.shape[-1] < self.min_samples:
            raise ValueError(
                f"segments of {x.shape[-1]} samples are shorter than the pooling "
                f"({self.min_samples})"
            )
        x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-5)
        _, (h, _) = self.lstm(self.blocks(x).transpose(1, 2))
        return h[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))
