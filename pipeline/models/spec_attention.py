"""Seed 001's audio network: a spectrogram CNN whose feature map is pooled by attention.

Zhou, Meng et al. (EmotiW 2019) turn speech into an image, the speech spectrogram (Hamming
window of 40 ms, hop 10 ms, the 200 lowest-frequency bins) or the log-mel spectrogram with
its deltas and delta-deltas (three channels), run a CNN over it, split the last feature map
[C, H, W] into H x W vectors of C dims and pool them with one of the intra-modal attentions of
:class:`pipeline.models.attention_fbp.AttentionPool` (self, relation or transformer) before a
softmax classifier.

What differs from the paper: the paper fine-tunes an ImageNet AlexNet on those images. ImageNet
weights cannot be downloaded on these machines, and an AlexNet has 61 M parameters for a few
hundred utterances (not tried here), so the CNN here is small (five blocks of 3 x 3
convolutions, batch norm, ReLU and 2 x 2 max-pooling; 8 to 128 channels by default) and
trained from scratch on the task's windows. The front end runs inside the network (torch
STFT), so the waveform augmentation of the raw-audio trainer and the GPU path apply
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from pipeline.models.attention_fbp import AttentionPool
from pipeline.models.audio_cnn_lstm import spec_masks

__all__ = ["FRONT_ENDS", "SpecAttentionNet", "SpectrogramFrontEnd", "delta"]

FrontEnd = Literal["spectrogram", "logmel"]
FRONT_ENDS = ("spectrogram", "logmel")


def delta(x: torch.Tensor, width: int = 9) -> torch.Tensor:
    """First time derivative by local linear regression over ``width`` frames.

    ``d_t = sum_{n=-N..N} n x_{t+n} / sum n^2`` with ``N = width // 2`` and the edge frames
    repeated past the ends: ``librosa.feature.delta(x, width=width, mode='nearest')``.

    Parameters
    ----------
    x : (..., T) float tensor
    width : odd int >= 3

    Returns
    -------
    (..., T) float tensor
    """
    if width < 3 or width % 2 == 0:
        raise ValueError(f"delta width must be odd and >= 3, got {width}")
    half = width // 2
    n = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    padded = torch.nn.functional.pad(flat, (half, half), mode="replicate")
    # conv1d is a cross-correlation: out_t = sum_n k_n x_{t+n}
    out = torch.nn.functional.conv1d(padded, (n / (n * n).sum())[None, None, :])
    return out.reshape(shape)


class SpectrogramFrontEnd(nn.Module):
    """Waveform windows to the paper's time-frequency images.

    Each window is first scaled to zero mean and unit variance (the level of separated vocals
    varies by orders of magnitude between recordings). Then:

    - ``spectrogram``: ``log(1 + |STFT|)`` with a symmetric Hamming window of ``win_ms``
      (40 ms), hop ``hop_ms`` (10 ms), FFT size = window length, centred frames (reflect
      padding), keeping the ``n_bins`` (200) lowest-frequency bins: 0 to 4975 Hz at 16 kHz.
      One channel.
    - ``logmel``: ``log(mel power + 1e-6)`` of the same STFT with ``n_mels`` (64) Slaney mel
      bands from 0 Hz to the Nyquist frequency (``librosa.filters.mel``), and its
      :func:`delta` and the delta of the delta (width 9, as HTK). Three channels.

    Every channel is then scaled to mean 0 and variance 1 over the whole window (one mean and
    one standard deviation per channel): the CNN sees the same range whatever the recording,
    and the spectral shape, which a per-row normalisation would remove, stays.

    Shapes
    ------
    input : (B, samples) float
    output : (B, C, F, T) float; C = 1 (spectrogram) or 3 (logmel), F = ``n_bins`` or
    ``n_mels``, T = ``1 + samples // hop``.
    """

    def __init__(
        self,
        kind: FrontEnd = "spectrogram",
        sample_rate: int = 16000,
        win_ms: float = 40.0,
        hop_ms: float = 10.0,
        n_bins: int = 200,
        n_mels: int = 64,
    ):
        super().__init__()
        if kind not in FRONT_ENDS:
            raise ValueError(f"front end must be one of {FRONT_ENDS}, got {kind!r}")
        self.kind = kind
        self.win = int(round(win_ms * sample_rate / 1000.0))
        self.hop = int(round(hop_ms * sample_rate / 1000.0))
        if self.hop < 1 or self.win < 2:
            raise ValueError(
                f"a {win_ms} ms window / {hop_ms} ms hop at {sample_rate} Hz is empty"
            )
        n_fft_bins = self.win // 2 + 1
        if kind == "spectrogram" and n_bins > n_fft_bins:
            raise ValueError(
                f"the spectrogram front end keeps {n_bins} bins, but a {win_ms} ms FFT at "
                f"{sample_rate} Hz has {n_fft_bins}: use audio of >= 10 kHz "
                "(extract_audio.rate_hz) or front_end: logmel"
            )
        self.n_bins = n_bins
        self.channels = 1 if kind == "spectrogram" else 3
        self.rows = n_bins if kind == "spectrogram" else n_mels
        self.register_buffer("window", torch.hamming_window(self.win, periodic=False))
        import librosa  # only here: importing librosa takes a second

        mel = librosa.filters.mel(sr=sample_rate, n_fft=self.win, n_mels=n_mels)
        self.register_buffer("mel", torch.from_numpy(mel.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-5)
        stft = torch.stft(
            x,
            n_fft=self.win,
            hop_length=self.hop,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        ).abs()  # [B, win // 2 + 1, T]
        if self.kind == "spectrogram":
            image = torch.log1p(stft[:, : self.n_bins])[:, None]  # [B, 1, F, T]
        else:
            logmel = torch.log(torch.einsum("mf,bft->bmt", self.mel, stft.pow(2)) + 1e-6)
            d1 = delta(logmel)
            image = torch.stack([logmel, d1, delta(d1)], dim=1)  # [B, 3, M, T]
        mean = image.mean(dim=(-2, -1), keepdim=True)
        return (image - mean) / (image.std(dim=(-2, -1), keepdim=True) + 1e-5)


class SpecAttentionNet(nn.Module):
    """Spectrogram CNN + attention over its feature-map positions + linear classifier.

    Parameters
    ----------
    n_classes : int
        Outputs K (class logits, or 2 raw valence/arousal values).
    front_end : {'spectrogram', 'logmel'}, default='spectrogram'
        See :class:`SpectrogramFrontEnd`.
    attention : {'self', 'relation', 'transformer'}, default='self'
        The pooling of the H x W feature vectors (:class:`AttentionPool`, paper eq. 1-7).
    channels : sequence of int, default=(8, 16, 32, 64, 128)
        Output channels of the conv blocks (3 x 3 conv, batch norm, ReLU, 2 x 2 max-pool).
        Five blocks turn a 2 s spectrogram (200 x 201) into a 6 x 6 map of 128-d vectors, at
        0.13 s per forward + backward pass of 16 windows on 2 CPU cores (four blocks of
        16-128 channels: 0.29 s).
    dropout : float, default=0.3
        Dropout before the classifier.
    attention_hidden : int, default=128
        Rows of ``W2`` of the transformer attention.
    sample_rate : int, default=16000
        Sample rate of the windows in Hz.
    spec_masks : int, default=0
        In training only: this many random bands of up to 16 rows and stretches of up to 20
        frames (0.2 s) of the image are zeroed (SpecAugment).

    Shapes
    ------
    input : (B, 1, samples) or (B, samples) float, ``samples >= hop * 2 ** len(channels)``
    output : (B, K)
    """

    def __init__(
        self,
        n_classes: int,
        front_end: FrontEnd = "spectrogram",
        attention: str = "self",
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        dropout: float = 0.3,
        attention_hidden: int = 128,
        sample_rate: int = 16000,
        spec_masks: int = 0,
    ):
        super().__init__()
        channels = tuple(channels)
        self.init_kwargs = dict(
            n_classes=n_classes,
            front_end=front_end,
            attention=attention,
            channels=channels,
            dropout=dropout,
            attention_hidden=attention_hidden,
            sample_rate=sample_rate,
            spec_masks=spec_masks,
        )  # to rebuild from a state dict (persist)
        if not channels:
            raise ValueError("SpecAttentionNet needs at least one conv block")
        self.front = SpectrogramFrontEnd(front_end, sample_rate)
        if self.front.rows < 2 ** len(channels):
            raise ValueError(f"{len(channels)} pooling blocks need >= {2 ** len(channels)} rows")
        self.spec_masks = spec_masks
        blocks, c_in = [], self.front.channels
        for c_out in channels:
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.cnn = nn.Sequential(*blocks)
        self.min_samples = self.front.hop * 2 ** len(channels)
        self.pool = AttentionPool(c_in, attention, attention_hidden)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.pool.out_dim, n_classes)

    def feature_vectors(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map split into its H x W positions: (B, H * W, C)."""
        if x.dim() == 3:
            x = x[:, 0]  # [B, 1, samples] -> [B, samples]
        if x.shape[-1] < self.min_samples:
            raise ValueError(
                f"windows of {x.shape[-1]} samples are shorter than the hop times the "
                f"pooling ({self.min_samples})"
            )
        image = self.front(x)  # [B, C, F, T]
        if self.training and self.spec_masks:
            b, _, f, t = image.shape
            image = (
                image * spec_masks((b, f, t), self.spec_masks, 16, 20).to(image.device)[:, None]
            )
        fmap = self.cnn(image)  # [B, C', H, W]
        return fmap.flatten(2).transpose(1, 2)  # [B, H * W, C']

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_vectors(x)
        mask = torch.ones(f.shape[:2], dtype=torch.bool, device=f.device)
        return self.head(self.drop(self.pool(f, mask)))
