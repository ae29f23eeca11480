"""The model-level fusion network of seed 002 (Schoneveld et al., RECOLA; their Fig. 3).

Per modality, a 1D-convolutional pre-transform over time: three parallel convolutions with
kernels 1, 3 and 5 over the bins of the window (input channels: the embedding and its
validity flag), their outputs concatenated and projected to ``channels`` by a 1x1
convolution, ReLU, and a max-pool over time that keeps every ``pool``-th step (the paper:
27 steps -> 9). The two modalities' sequences are concatenated per step ([T / pool,
2 * channels]) and read by a stacked LSTM; its last step goes through dropout to a linear
layer. Invalid bins (no face, no audio) are zeroed inside the network, so their values can
never reach the output; the validity flag is an input channel of its modality.

Simplified against the paper: the inputs are the pipeline's per-bin embeddings (e.g. the
FER-2013 mini-Xception and log-mel features), not the paper's self-distilled face network and
VGGish audio branch, and nothing here is trained end to end with those front ends.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.fusion_inputs import unpack_inputs


class TemporalPreTransform(nn.Module):
    """Parallel 1D convolutions over time, 1x1 projection, ReLU, max-pool.

    Parameters
    ----------
    in_channels : int
        Features per step (embedding width + 1 validity channel).
    channels : int
        Output channels (the paper: 64).
    kernels : tuple of int
        Kernel sizes of the parallel convolutions (odd; the paper: 1, 3, 5); each is padded
        to keep the number of steps.
    pool : int
        Max-pool window and stride over time: ``T`` steps become ``T // pool``.
    """

    def __init__(self, in_channels: int, channels: int, kernels: tuple[int, ...], pool: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(in_channels, channels, k, padding=k // 2) for k in kernels
        )
        self.project = nn.Conv1d(channels * len(kernels), channels, 1)
        self.pool = nn.MaxPool1d(pool, stride=pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, C_in] -> [B, T // pool, channels]."""
        h = x.transpose(1, 2)  # [B, C_in, T]
        h = torch.cat([conv(h) for conv in self.convs], dim=1)  # [B, k * channels, T]
        h = self.pool(torch.relu(self.project(h)))  # [B, channels, T // pool]
        return h.transpose(1, 2)


class ConvLSTMFusionNet(nn.Module):
    """Seed 002's fusion network on packed face/audio windows (pipeline.models.fusion_inputs).

    Parameters
    ----------
    dim_v, dim_a : int
        Face and audio embedding widths Dv, Da.
    n_out : int
        Outputs: K class logits (expr) or 2 raw valence/arousal values (va; the trainer
        applies tanh).
    channels : int
        Channels of each modality's pre-transform (the paper: 64).
    kernels : sequence of int
        Kernel sizes of the parallel convolutions (the paper: 1, 3, 5).
    pool : int
        Temporal max-pool stride (the paper: 3).
    lstm_hidden : int
        LSTM units per layer (the paper: 256).
    lstm_layers : int
        Stacked LSTM layers (the paper: 2).
    dropout : float
        Dropout between LSTM layers and before the linear layer.
    """

    def __init__(
        self,
        dim_v: int,
        dim_a: int,
        n_out: int,
        *,
        channels: int,
        kernels: tuple[int, ...] | list[int],
        pool: int,
        lstm_hidden: int,
        lstm_layers: int,
        dropout: float,
    ):
        super().__init__()
        self.dim_v, self.dim_a = dim_v, dim_a
        self.face = TemporalPreTransform(dim_v + 1, channels, tuple(kernels), pool)
        self.audio = TemporalPreTransform(dim_a + 1, channels, tuple(kernels), pool)
        self.lstm = nn.LSTM(
            2 * channels,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(lstm_hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, Dv + 1 + Da + 1] packed windows -> [B, n_out]."""
        v, v_mask, a, a_mask = unpack_inputs(x, self.dim_v, self.dim_a)
        fv, fa = v_mask[..., None].to(x.dtype), a_mask[..., None].to(x.dtype)
        v = torch.where(v_mask[..., None], v, torch.zeros_like(v))  # NaN-safe, unlike v * fv
        a = torch.where(a_mask[..., None], a, torch.zeros_like(a))
        hv = self.face(torch.cat([v, fv], dim=-1))  # [B, T // pool, channels]
        ha = self.audio(torch.cat([a, fa], dim=-1))
        out, _ = self.lstm(torch.cat([hv, ha], dim=-1))  # [B, T // pool, lstm_hidden]
        return self.head(self.drop(out[:, -1]))
