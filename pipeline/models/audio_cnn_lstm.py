"""End-to-end 1D CNN + LSTM on raw audio (model 4 of the ABAW 2020 system).

The raw 16 kHz waveform is cut into 4 s windows (64,000 samples) that overlap by 2/5
of a window (hop 0.6 * 4 s = 2.4 s). Each window goes through a learned filterbank (a
strided 1-D convolution, log magnitude, per-window normalisation), 1-D convolution blocks
(Conv1d -> BatchNorm -> ReLU -> MaxPool -> Dropout 0.3), then two LSTM layers whose
outputs are averaged over time and mapped to K class logits (sequence-to-one). Training
uses Adam on the categorical cross-entropy, optionally with the logarithmic class weights of
the paper (r = 0.34), augmentation (:func:`augment_waveforms`), a cosine learning-rate decay,
an exponential moving average of the weights, and early stopping on a validation set.

Window predictions are mapped back to the 5 Hz label grid elsewhere
(``pipeline.features.windows``); ``starts_s`` of :func:`raw_audio_windows` gives each
window's position.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
from torch import nn

from pipeline.models.class_weights import MASK_LABEL
from pipeline.models.lstm import (
    fit_torch_classifier,
    fork_rng_devices,
    predict_logits,
    resolve_class_weights,
    seed_from_random_state,
    split_validation,
)
from pipeline.models.persist import TorchPickleMixin

log = logging.getLogger(__name__)

__all__ = ["AudioCNNLSTM", "AudioCNNLSTMClassifier", "augment_waveforms", "raw_audio_windows"]


def raw_audio_windows(
    wave: np.ndarray, sr: int, window_s: float = 4.0, overlap: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Cut a waveform into overlapping fixed-length windows that cover all of it.

    Parameters
    ----------
    wave : (S,) float array
        Mono waveform (any scale; 16 kHz in the paper).
    sr : int
        Sample rate in Hz.
    window_s : float, default=4.0
        Window length in seconds: ``w = round(window_s * sr)`` samples.
    overlap : float, default=0.4
        Fraction of a window shared with the next, in ``[0, 1)``; the paper's 2/5 gives
        a hop of ``round(w * (1 - overlap))`` samples = 2.4 s for 4 s windows.

    Returns
    -------
    windows : (W, w) float32 array
        ``W = 1 + ceil(max(0, S - w) / hop)`` windows starting at ``i * hop``. The last
        window is zero-padded past the end of the signal, so every sample lies in at
        least one window; a signal shorter than one window gives one zero-padded
        window. An empty signal gives ``W = 0``.
    starts_s : (W,) float64 array
        Start time of each window in seconds (``i * hop / sr``).
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"wave must be 1-D, got shape {wave.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    win = int(round(window_s * sr))
    if win < 1:
        raise ValueError(f"window of {window_s} s at {sr} Hz has no samples")
    hop = max(1, int(round(win * (1.0 - overlap))))
    n = wave.shape[0]
    if n == 0:
        return np.zeros((0, win), dtype=np.float32), np.zeros(0)
    n_win = 1 + math.ceil(max(0, n - win) / hop)
    starts = np.arange(n_win) * hop
    padded = np.zeros(int(starts[-1]) + win, dtype=np.float32)
    padded[:n] = wave
    idx = starts[:, None] + np.arange(win)[None, :]
    return padded[idx], starts / float(sr)


def augment_waveforms(
    x: torch.Tensor, generator: torch.Generator, snr_db: tuple[float, float] = (10.0, 40.0)
) -> torch.Tensor:
    """Random copies of training windows: a circular time shift and additive noise.

    Each window is rotated by a uniform random number of samples (the emotion of an utterance
    does not depend on where in the window it starts) and gets white noise at a uniform
    random signal-to-noise ratio in ``snr_db``. With a few hundred training windows, as in
    EmoDB, the network otherwise memorises them within a few epochs.

    Parameters
    ----------
    x : (B, 1, samples) float tensor
    generator : torch.Generator
        CPU generator every random draw comes from.
    snr_db : (low, high)
        Range of the signal-to-noise ratio in dB.

    Returns
    -------
    (B, 1, samples) float tensor (a new tensor; ``x`` is unchanged).
    """
    b, _, n = x.shape
    shift = torch.randint(0, n, (b, 1), generator=generator)
    idx = (torch.arange(n)[None, :] + shift) % n
    out = torch.gather(x[:, 0], 1, idx)[:, None]
    snr = snr_db[0] + (snr_db[1] - snr_db[0]) * torch.rand(b, 1, 1, generator=generator)
    power = out.pow(2).mean(dim=-1, keepdim=True)
    noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out + noise * torch.sqrt(power / 10.0 ** (snr / 10.0))


def spec_masks(shape: torch.Size, n_masks: int, max_bands: int, max_frames: int) -> torch.Tensor:
    """(B, F, T) float of ones with ``n_masks`` random bands of up to ``max_bands`` rows and
    ``n_masks`` random stretches of up to ``max_frames`` frames set to zero (SpecAugment, Park et
    al. 2019); drawn from torch's global generator, as dropout is."""
    b, f, t = shape
    keep = torch.ones(shape)
    rows, frames = torch.arange(f)[None, :], torch.arange(t)[None, :]
    for _ in range(n_masks):
        f0, fw = torch.randint(0, f, (b, 1)), torch.randint(0, max_bands + 1, (b, 1))
        t0, tw = torch.randint(0, t, (b, 1)), torch.randint(0, max_frames + 1, (b, 1))
        keep *= (~((rows >= f0) & (rows < f0 + fw)))[:, :, None]
        keep *= (~((frames >= t0) & (frames < t0 + tw)))[:, None, :]
    return keep


def gabor_filters(n_filters: int, length: int, sample_rate: int) -> torch.Tensor:
    """Complex Gabor filters centred on mel-spaced frequencies (Zeghidour et al. 2018).

    Filter ``n`` is ``exp(2 pi i f_n t) g_n(t)``: ``f_n`` the centre of the n-th of
    ``n_filters`` triangular mel bands between 60 Hz and ``sample_rate / 2``, ``g_n`` a
    Gaussian window whose frequency response has the band's full width at half maximum
    (``sigma = sqrt(2 ln 2) / (pi FWHM)`` seconds, at most ``length / 6`` samples so the
    window fits), scaled to unit gain at ``f_n``. At initialisation the magnitude of the
    filter outputs is a mel spectrogram; training adapts the filters.

    Returns
    -------
    (2 * n_filters, 1, length) float tensor
        Real parts (rows ``0..n-1``), then imaginary parts, as ``Conv1d`` weights.
    """
    import librosa

    edges = librosa.mel_frequencies(n_filters + 2, fmin=60.0, fmax=sample_rate / 2.0)
    centre, fwhm = edges[1:-1], (edges[2:] - edges[:-2]) / 2.0
    sigma = np.minimum(np.sqrt(2.0 * np.log(2.0)) / (np.pi * fwhm) * sample_rate, length / 6.0)
    t = np.arange(length) - (length - 1) / 2.0  # samples, centred
    window = np.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    window /= window.sum(axis=1, keepdims=True)
    phase = 2.0 * np.pi * centre[:, None] / sample_rate * t[None, :]
    weights = np.concatenate([window * np.cos(phase), window * np.sin(phase)])
    return torch.from_numpy(weights[:, None, :].astype(np.float32))


class AudioCNNLSTM(nn.Module):
    """1-D CNN + 2-layer LSTM over a raw waveform window.

    The first convolution is a learned filterbank: ``n_filters`` kernels of ``filter_len``
    samples moved by ``filter_hop`` (25 ms and 10 ms at 16 kHz), then the log of the filter
    outputs' magnitude and a per-window normalisation of every filter over time (cepstral
    mean and variance normalisation of a learned spectrogram: it removes the speaker's and
    the channel's constant colouring). With ``filterbank='gabor'`` the kernels are complex
    (a real and an imaginary kernel each, the magnitude taken of the pair) and start as
    Gabor filters on mel-spaced centres (:func:`gabor_filters`, Zeghidour et al. 2018), so
    the network starts from a mel spectrogram; ``'learned'`` starts from random real
    kernels. Conv blocks (Conv1d -> BatchNorm -> ReLU -> MaxPool
    -> Dropout) over the 100 Hz frames follow, then the LSTM; the logits come from its
    outputs averaged over time (``readout='mean'``) or from its last step (``'last'``).

    On the speaker-independent EmoDB split a plain strided-conv stack at the full sample
    rate is 10x slower per epoch and swings between chance and 0.5 UAR from one epoch to
    the next (tests/benchmarks/bench_raw_audio_emodb.py).

    Parameters
    ----------
    n_classes : int
        Number of outputs K.
    n_filters : int, default=40
        Filters of the learned filterbank.
    filter_len, filter_hop : int, default=400, 160
        Filter length and hop in samples (25 ms and 10 ms at 16 kHz).
    channels : sequence of int, default=(64, 128)
        Output channels of the conv blocks after the filterbank (at least 2).
    kernel_size : int, default=5
        Kernel of those blocks, in frames ('same' padding).
    pool_sizes : sequence of int, default=(2, 2)
        Max-pool size per block: a 4 s window becomes 100 LSTM steps of 40 ms.
    dropout : float, default=0.3
        Dropout after each conv block, between LSTM layers and before the output layer.
    lstm_hidden : int, default=128
    lstm_layers : int, default=2
    readout : {'mean', 'last'}, default='mean'
    spec_masks : int, default=0
        In training only: this many random bands of up to 8 filters and this many random
        stretches of up to 20 frames (0.2 s) of the filterbank output are set to zero
        (SpecAugment, Park et al. 2019), drawn from torch's global generator.
    filterbank : {'learned', 'gabor'}, default='learned'
        Random real kernels, or complex kernels initialised as mel-centred Gabor filters.
        On EmoDB's unseen speakers the Gabor start is the difference between a net that
        plateaus at test UAR 0.45 and one that reaches 0.56 (README, raw-audio model).
        The default stays ``'learned'`` so that checkpoints saved before the option load;
        ``fit_raw_audio.nets.cnn_lstm_raw.filterbank`` chooses for the pipeline.
    sample_rate : int, default=16000
        Sample rate of the input in Hz (places the Gabor centres).

    Each window is standardised to zero mean and unit variance first, so the output does not
    depend on the recording level.

    Shapes
    ------
    input : (B, 1, samples) or (B, samples) float; ``samples >= filter_hop * prod(pool_sizes)``
    output : (B, K) logits
    """

    def __init__(
        self,
        n_classes: int,
        n_filters: int = 40,
        filter_len: int = 400,
        filter_hop: int = 160,
        channels: Sequence[int] = (64, 128),
        kernel_size: int = 5,
        pool_sizes: Sequence[int] = (2, 2),
        dropout: float = 0.3,
        lstm_hidden: int = 128,
        lstm_layers: int = 2,
        readout: str = "mean",
        spec_masks: int = 0,
        filterbank: str = "learned",
        sample_rate: int = 16000,
    ):
        super().__init__()
        channels, pool_sizes = tuple(channels), tuple(pool_sizes)
        self.init_kwargs = dict(
            n_classes=n_classes,
            n_filters=n_filters,
            filter_len=filter_len,
            filter_hop=filter_hop,
            channels=channels,
            kernel_size=kernel_size,
            pool_sizes=pool_sizes,
            dropout=dropout,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            readout=readout,
            spec_masks=spec_masks,
            filterbank=filterbank,
            sample_rate=sample_rate,
        )  # to rebuild from a state dict (persist)
        if len(channels) != len(pool_sizes):
            raise ValueError("channels and pool_sizes need one entry per block")
        if len(channels) < 2:
            raise ValueError("AudioCNNLSTM needs at least 2 conv blocks after the filterbank")
        if readout not in ("mean", "last"):
            raise ValueError(f"readout must be 'mean' or 'last', got {readout!r}")
        self.readout = readout
        self.spec_masks = spec_masks
        if filterbank not in ("learned", "gabor"):
            raise ValueError(f"filterbank must be 'learned' or 'gabor', got {filterbank!r}")
        self.complex_filters = filterbank == "gabor"
        self.filterbank = nn.Conv1d(
            1,
            2 * n_filters if self.complex_filters else n_filters,
            filter_len,
            stride=filter_hop,
            padding=filter_len // 2,
            bias=False,
        )
        if self.complex_filters:
            with torch.no_grad():
                self.filterbank.weight.copy_(gabor_filters(n_filters, filter_len, sample_rate))
        blocks, c_in = [], n_filters
        for c_out, pool in zip(channels, pool_sizes):
            blocks += [
                nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool1d(pool),
                nn.Dropout(dropout),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.min_samples = int(filter_hop * np.prod(pool_sizes))
        self.lstm = nn.LSTM(
            c_in,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(lstm_hidden, n_classes)

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log filterbank frames: (B, 1, samples) -> (B, n_filters, frames)."""
        # each window to zero mean, unit variance (the seed-003 audio model's input scaling):
        # the level of separated vocals varies by orders of magnitude between recordings
        x = (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-5)
        h = self.filterbank(x)
        if self.complex_filters:  # real and imaginary halves -> magnitude (an envelope)
            re, im = h.chunk(2, dim=1)
            h = torch.sqrt(re * re + im * im + 1e-8)
        h = torch.log1p(10.0 * h.abs())
        return (h - h.mean(dim=-1, keepdim=True)) / (h.std(dim=-1, keepdim=True) + 1e-5)

    def _masks(self, shape: torch.Size) -> torch.Tensor:
        """(B, F, T) float of ones with ``spec_masks`` bands of <= 8 filters and stretches of
        <= 20 frames zeroed."""
        return spec_masks(shape, self.spec_masks, 8, 20).to(self.filterbank.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # [B, samples] -> [B, 1, samples]
        if x.shape[-1] < self.min_samples:
            raise ValueError(
                f"windows of {x.shape[-1]} samples are shorter than the filterbank hop times "
                f"the pooling ({self.min_samples})"
            )
        h = self.frames(x)  # [B, F, T]
        if self.training and self.spec_masks:
            h = h * self._masks(h.shape)
        h = self.features(h)  # [B, C, T']
        out, _ = self.lstm(h.transpose(1, 2))  # [B, T', H]
        pooled = out.mean(dim=1) if self.readout == "mean" else out[:, -1]
        return self.head(self.drop(pooled))  # [B, K]


class AudioCNNLSTMClassifier(TorchPickleMixin, ClassifierMixin, BaseEstimator):
    """Scikit-learn style trainer for :class:`AudioCNNLSTM` on raw-audio windows.

    Parameters
    ----------
    n_filters, filter_len, filter_hop, channels, kernel_size, pool_sizes, dropout,
    lstm_hidden, lstm_layers, readout, spec_masks
        Architecture and its training-time masking, see :class:`AudioCNNLSTM`.
    epochs : int, default=50
        Maximum number of epochs.
    lr : float, default=0.00025
        Adam learning rate (the paper's value).
    batch_size : int, default=32
        Windows per mini-batch.
    patience : int or None, default=5
        Early stopping patience in epochs on the validation loss (None: run all epochs,
        keep the best validation epoch).
    tol : float, default=1e-4
        Minimum validation-loss decrease counted as an improvement.
    validation_fraction : float, default=0.1
        Seeded hold-out fraction used for early stopping when ``fit`` gets no ``X_val``;
        0 trains on everything for all epochs and keeps the last weights.
    weight_decay : float, default=0.0
        Adam L2 weight decay.
    grad_clip : float or None, default=5.0
        Global gradient-norm clipping.
    augment : bool, default=False
        Train on randomly shifted, noisy copies of the windows (:func:`augment_waveforms`).
    cosine : bool, default=False
        Cosine learning-rate decay to 0 over ``epochs``.
    ema : float or None, default=None
        Decay per step of an exponential moving average of the weights; validation and
        prediction use the average (see :func:`pipeline.models.lstm.fit_torch_classifier`).
    select : {"loss", "uar"}, default="loss"
        The validation measure that picks the epoch kept and drives early stopping.
    net : {"cnn_lstm", "spec_attention"}, default="cnn_lstm"
        The network: :class:`AudioCNNLSTM` (seed 000's model 4, built from the architecture
        keywords above) or seed 001's :class:`~pipeline.models.spec_attention.SpecAttentionNet`
        (built from ``net_params`` and ``spec_masks``).
    net_params : dict or None, default=None
        Further keywords of the network: for ``cnn_lstm`` those of :class:`AudioCNNLSTM` not
        listed above (``filterbank``, ``sample_rate``); for ``spec_attention`` those of
        :class:`~pipeline.models.spec_attention.SpecAttentionNet` (front end, attention
        kind, channels, sample rate...).
    init : str or None, default=None
        A ``pretrain_audio`` checkpoint: the network is that one (seed 003's
        :class:`~pipeline.models.segment_audio.SegmentAudioNet`, pre-trained weights) with a
        new classifier, instead of an :class:`AudioCNNLSTM`; the architecture keywords and
        ``spec_masks`` then do not apply.
    class_weight : dict, 'log', 'balanced' or None, default=None
        Cross-entropy class weights; ``'log'`` is the paper's logarithmic weighting.
    class_weight_r : float, default=0.34
        The ``r`` of ``class_weight='log'`` (0.34 for the CNN in the paper).
    device : str, default='cpu'
        ``'cpu'``, ``'cuda'`` or ``'cuda:<i>'``.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, dropout, shuffling and the hold-out split.

    Attributes
    ----------
    classes_ : (K,) array
        Labels seen in ``fit`` (``-1`` = no label is excluded).
    module_ : AudioCNNLSTM
        The trained network (eval mode).
    history_ : list of dict
        ``epoch``, ``train_loss``, ``val_loss`` per epoch run.
    best_epoch_, n_epochs_ : int
        Epoch kept and epochs run.
    n_features_in_ : int
        Window length in samples.
    """

    def __init__(
        self,
        n_filters: int = 40,
        filter_len: int = 400,
        filter_hop: int = 160,
        channels: Sequence[int] = (64, 128),
        kernel_size: int = 5,
        pool_sizes: Sequence[int] = (2, 2),
        dropout: float = 0.3,
        lstm_hidden: int = 128,
        lstm_layers: int = 2,
        readout: str = "mean",
        spec_masks: int = 0,
        epochs: int = 50,
        lr: float = 0.00025,
        batch_size: int = 32,
        patience: int | None = 5,
        tol: float = 1e-4,
        validation_fraction: float = 0.1,
        weight_decay: float = 0.0,
        grad_clip: float | None = 5.0,
        augment: bool = False,
        cosine: bool = False,
        ema: float | None = None,
        select: str = "loss",
        net: str = "cnn_lstm",
        net_params: dict | None = None,
        init: str | None = None,
        class_weight: dict | str | None = None,
        class_weight_r: float = 0.34,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
    ):
        self.n_filters = n_filters
        self.filter_len = filter_len
        self.filter_hop = filter_hop
        self.channels = channels
        self.kernel_size = kernel_size
        self.pool_sizes = pool_sizes
        self.dropout = dropout
        self.lstm_hidden = lstm_hidden
        self.lstm_layers = lstm_layers
        self.readout = readout
        self.spec_masks = spec_masks
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.patience = patience
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.augment = augment
        self.cosine = cosine
        self.ema = ema
        self.select = select
        self.net = net
        self.net_params = net_params
        self.init = init
        self.class_weight = class_weight
        self.class_weight_r = class_weight_r
        self.device = device
        self.random_state = random_state

    def _encode(self, y: np.ndarray) -> np.ndarray:
        out = np.full(y.shape, MASK_LABEL, dtype=np.int64)
        mask = y != MASK_LABEL
        idx = np.clip(np.searchsorted(self.classes_, y[mask]), 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], y[mask]):
            raise ValueError("y_val holds labels that are not in the training labels")
        out[mask] = idx
        return out

    def fit(self, X, y, X_val=None, y_val=None) -> AudioCNNLSTMClassifier:
        """Train on raw-audio windows.

        Parameters
        ----------
        X : (N, samples) float array
            Windows (e.g. rows of :func:`raw_audio_windows`).
        y : (N,) int array
            Class label per window; ``-1`` = no label (masked from the loss).
        X_val, y_val : arrays or None
            Validation windows for early stopping (instead of the hold-out).

        Returns
        -------
        self
        """
        if not (isinstance(self.epochs, numbers.Integral) and self.epochs >= 1):
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r}")
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_ = np.unique(y[y != MASK_LABEL])
        if len(self.classes_) < 2:
            raise ValueError("AudioCNNLSTMClassifier needs samples of at least 2 classes")
        y_idx = self._encode(y)
        seed = seed_from_random_state(self.random_state)
        if X_val is not None:
            Xv = validate_data(self, X_val, dtype=np.float32, reset=False)
            yv = self._encode(column_or_1d(np.asarray(y_val)))
            X_tr, y_tr = X, y_idx
        else:
            tr, va = split_validation(len(X), self.validation_fraction, seed)
            X_tr, y_tr, Xv, yv = X[tr], y_idx[tr], X[va], y_idx[va]
        cw = resolve_class_weights(self.class_weight, self.classes_, y_tr, self.class_weight_r)

        device = torch.device(self.device)
        with torch.random.fork_rng(devices=fork_rng_devices(device)):
            torch.manual_seed(seed)
            module = self._module()
            if X.shape[1] < module.min_samples:
                raise ValueError(
                    f"windows of {X.shape[1]} samples are shorter than the network's "
                    f"pooling ({module.min_samples})"
                )
            self.history_, self.best_epoch_ = fit_torch_classifier(
                module,
                torch.tensor(X_tr[:, None, :]),
                torch.tensor(y_tr),
                torch.tensor(Xv[:, None, :]) if len(Xv) else None,
                torch.tensor(yv) if len(Xv) else None,
                epochs=self.epochs,
                lr=self.lr,
                batch_size=self.batch_size,
                patience=self.patience,
                tol=self.tol,
                class_weights=cw,
                device=device,
                generator=torch.Generator().manual_seed(seed),
                weight_decay=self.weight_decay,
                grad_clip=self.grad_clip,
                augment=augment_waveforms if self.augment else None,
                cosine=self.cosine,
                ema=self.ema,
                select=self.select,
            )
        self.module_ = module
        self.n_epochs_ = len(self.history_)
        log.info(
            "%s fitted on %d windows of %d samples: %d epochs (best %d)",
            type(module).__name__,
            len(X_tr),
            X.shape[1],
            self.n_epochs_,
            self.best_epoch_,
        )
        return self

    def _module(self) -> torch.nn.Module:
        """The untrained network: an AudioCNNLSTM or a SpecAttentionNet (``net``), or the
        ``init`` checkpoint's network with a new (seeded) classifier."""
        if self.init is not None or self.net != "cnn_lstm":  # net_params: the net's keywords
            return build_raw_net(
                self.net, len(self.classes_), self.net_params, self.spec_masks, self.init
            )
        return AudioCNNLSTM(
            len(self.classes_),
            n_filters=self.n_filters,
            filter_len=self.filter_len,
            filter_hop=self.filter_hop,
            channels=self.channels,
            kernel_size=self.kernel_size,
            pool_sizes=self.pool_sizes,
            dropout=self.dropout,
            lstm_hidden=self.lstm_hidden,
            lstm_layers=self.lstm_layers,
            readout=self.readout,
            spec_masks=self.spec_masks,
            **(self.net_params or {}),
        )

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities per window.

        Parameters
        ----------
        X : (N, samples) float array

        Returns
        -------
        (N, K) float64 array, columns in the order of ``classes_``, rows sum to 1.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        logits = predict_logits(
            self.module_,
            torch.tensor(X[:, None, :]),
            batch_size=self.batch_size,
            device=self.device,
        )
        return torch.softmax(logits.double(), dim=-1).numpy()

    def predict(self, X) -> np.ndarray:
        """Most probable class per window: (N,) labels from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


RAW_NETS = ("cnn_lstm", "spec_attention")


def build_raw_net(
    net: str,
    n_out: int,
    net_params: dict | None = None,
    spec_masks: int = 0,
    init: str | None = None,
) -> nn.Module:
    """An untrained raw-audio network with ``n_out`` outputs.

    ``init`` (a ``pretrain_audio`` checkpoint) gives that checkpoint's network with a new
    head; otherwise ``net`` is ``"cnn_lstm"`` (:class:`AudioCNNLSTM` with its defaults and
    ``net_params``) or
    ``"spec_attention"`` (:class:`~pipeline.models.spec_attention.SpecAttentionNet` with
    ``net_params``). ``spec_masks``: SpecAugment masks per training window.
    """
    if init is not None:
        from pipeline.models.checkpoint import load_checkpoint, with_new_head

        return with_new_head(load_checkpoint(init, "SegmentAudioNet")[0], n_out)
    if net == "spec_attention":
        from pipeline.models.spec_attention import SpecAttentionNet  # imports this module

        return SpecAttentionNet(n_out, spec_masks=spec_masks, **(net_params or {}))
    if net == "cnn_lstm":
        return AudioCNNLSTM(n_out, spec_masks=spec_masks, **(net_params or {}))
    raise ValueError(f"net must be one of {RAW_NETS}, got {net!r}")
