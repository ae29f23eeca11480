"""Tests for pipeline.models.audio_cnn_lstm (end-to-end raw-audio 1D CNN + LSTM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models.audio_cnn_lstm import (
    AudioCNNLSTM,
    AudioCNNLSTMClassifier,
    augment_waveforms,
    gabor_filters,
    raw_audio_windows,
)

torch.set_num_threads(1)

SR = 16_000
TINY = dict(
    n_filters=8,
    filter_len=64,
    filter_hop=32,
    channels=(8, 16),
    kernel_size=3,
    pool_sizes=(2, 2),
    lstm_hidden=16,
    lstm_layers=2,
    batch_size=8,
)


# ----------------------------------------------------------------------- windowing
def test_windows_paper_setting_hop_and_padding():
    wave = np.arange(10 * SR, dtype=np.float32) / SR  # 10 s ramp, value = time
    windows, starts = raw_audio_windows(wave, SR, window_s=4.0, overlap=0.4)
    # hop = (1 - 2/5) * 4 s = 2.4 s; 1 + ceil((10 - 4) / 2.4) = 4 windows
    assert windows.shape == (4, 64_000) and windows.dtype == np.float32
    np.testing.assert_allclose(starts, [0.0, 2.4, 4.8, 7.2])
    for w, s in zip(windows[:3], starts[:3]):
        i = int(round(s * SR))
        np.testing.assert_array_equal(w, wave[i : i + 64_000])
    tail = 10 * SR - int(7.2 * SR)  # 44,800 real samples
    np.testing.assert_array_equal(windows[3, :tail], wave[int(7.2 * SR) :])
    assert not windows[3, tail:].any()  # zero padding
    # every sample is covered
    covered = np.zeros(10 * SR, bool)
    for s in starts:
        i = int(round(s * SR))
        covered[i : i + 64_000] = True
    assert covered.all()


@pytest.mark.parametrize(
    "n_samples, n_windows",
    [(1, 1), (64_000, 1), (64_001, 2), (64_000 + 38_400, 2), (64_000 + 38_401, 3), (0, 0)],
)
def test_window_count(n_samples, n_windows):
    windows, starts = raw_audio_windows(np.ones(n_samples), SR)
    assert windows.shape == (n_windows, 64_000)
    assert starts.shape == (n_windows,)
    if n_windows:
        end = starts[-1] * SR + 64_000
        assert end >= n_samples  # the end is covered
        assert windows.sum() >= n_samples  # all ones kept, rest zeros


def test_window_errors():
    with pytest.raises(ValueError):
        raw_audio_windows(np.ones((2, 10)), SR)
    with pytest.raises(ValueError):
        raw_audio_windows(np.ones(10), SR, overlap=1.0)


# --------------------------------------------------------------------------- model
def test_model_output_shapes_on_four_second_windows():
    torch.manual_seed(0)
    model = AudioCNNLSTM(n_classes=7).eval()
    n_conv = sum(isinstance(m, torch.nn.Conv1d) for m in model.features)
    assert n_conv >= 2  # plus the filterbank
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.features) == n_conv
    assert model.lstm.num_layers == 2
    x = torch.randn(2, 1, 64_000)
    with torch.no_grad():
        h = model.features(model.frames(x))
        out = model(x)
        out_2d = model(x[:, 0])
    assert h.shape == (2, 128, 100)  # 401 frames of 10 ms, pooled by 2 twice
    assert out.shape == (2, 7)
    torch.testing.assert_close(out, out_2d)


def test_model_rejects_too_short_windows():
    arch = ("n_filters", "filter_len", "filter_hop", "channels", "kernel_size", "pool_sizes")
    model = AudioCNNLSTM(n_classes=2, **{k: TINY[k] for k in arch})
    with pytest.raises(ValueError, match="pooling"):
        model(torch.zeros(1, 1, 32))


def test_model_needs_two_blocks_of_one_shape():
    with pytest.raises(ValueError, match="at least 2"):
        AudioCNNLSTM(2, channels=(8,), pool_sizes=(4,))
    with pytest.raises(ValueError, match="one entry per block"):
        AudioCNNLSTM(2, channels=(8, 8, 8), pool_sizes=(2, 2))
    with pytest.raises(ValueError, match="readout"):
        AudioCNNLSTM(2, readout="max")


def test_filterbank_frames_are_normalised_log_magnitudes():
    """25 ms filters every 10 ms; each filter's log magnitude has zero mean and unit
    variance over the window's frames, so a constant colouring of the channel cancels."""
    torch.manual_seed(0)
    model = AudioCNNLSTM(3).eval()
    x = torch.randn(2, 1, 32_000)
    with torch.no_grad():
        h = model.frames(x)
        z = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        raw = torch.log1p(
            10
            * torch.nn.functional.conv1d(z, model.filterbank.weight, stride=160, padding=200).abs()
        )
    assert h.shape == (2, 40, 201)
    torch.testing.assert_close(
        h, (raw - raw.mean(-1, keepdim=True)) / (raw.std(-1, keepdim=True) + 1e-5)
    )
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 40), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.std(-1), torch.ones(2, 40), atol=1e-3, rtol=0)


def test_gabor_filters_sit_on_mel_centres_with_the_mel_bandwidths():
    """Filter n's frequency response peaks at the n-th mel centre (60 Hz - 8 kHz) with unit
    gain, and is as wide at half height as the n-th triangular mel band."""
    import librosa

    w = gabor_filters(40, 400, SR).numpy()[:, 0]
    assert w.shape == (40 + 40, 400)
    # the complex kernel re + i im; the magnitude of the pair for a real tone of f follows it
    response = np.abs(np.fft.fft(w[:40] + 1j * w[40:], n=SR, axis=1))[:, : SR // 2]
    edges = librosa.mel_frequencies(42, fmin=60.0, fmax=SR / 2)
    np.testing.assert_allclose(response.argmax(axis=1), edges[1:-1], atol=1.0)
    np.testing.assert_allclose(response.max(axis=1), 1.0, atol=0.01)
    half = (response >= 0.5 * response.max(axis=1, keepdims=True)).sum(axis=1)
    fwhm = (edges[2:] - edges[:-2]) / 2
    # sigma is capped at 400 / 6 samples (the window must fit in 25 ms): bands narrower than
    # sqrt(2 ln 2) 6 SR / (pi 400) = 90 Hz get that width instead
    wide = fwhm >= np.sqrt(2 * np.log(2)) * 6 * SR / (np.pi * 400)
    assert 15 <= wide.sum() < 40
    np.testing.assert_allclose(half[wide], fwhm[wide], rtol=0.05)
    np.testing.assert_allclose(half[~wide], 90, atol=3)


def test_gabor_filterbank_starts_as_a_mel_spectrogram():
    """With ``filterbank='gabor'`` an untrained net's filter magnitudes peak, for a steady
    tone, at the filter whose mel centre is nearest the tone; ``'learned'`` (random real
    kernels) keeps the old layer and so the old checkpoints' shapes."""
    gabor = AudioCNNLSTM(3, filterbank="gabor").eval()
    assert gabor.filterbank.weight.shape == (80, 1, 400)
    assert AudioCNNLSTM(3).filterbank.weight.shape == (40, 1, 400)
    import librosa

    centres = librosa.mel_frequencies(42, fmin=60.0, fmax=SR / 2)[1:-1]
    t = np.arange(SR) / SR
    for f in (300.0, 1000.0, 3000.0):
        x = torch.from_numpy(np.sin(2 * np.pi * f * t).astype(np.float32))[None, None]
        with torch.no_grad():
            re, im = gabor.filterbank(x).chunk(2, dim=1)
        energy = torch.sqrt(re**2 + im**2)[0, :, 10:-10].mean(-1).numpy()
        assert energy.argmax() == np.abs(centres - f).argmin()
    x = torch.randn(2, 1, 16_000)
    with torch.no_grad():  # the frames: normalised log magnitudes of the complex pairs
        z = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        re, im = gabor.filterbank(z).chunk(2, dim=1)
        raw = torch.log1p(10 * torch.sqrt(re**2 + im**2 + 1e-8))
        torch.testing.assert_close(
            gabor.frames(x),
            (raw - raw.mean(-1, keepdim=True)) / (raw.std(-1, keepdim=True) + 1e-5),
        )
    with pytest.raises(ValueError, match="filterbank"):
        AudioCNNLSTM(3, filterbank="sinc")


def test_mean_and_last_readouts_differ_only_in_pooling():
    torch.manual_seed(0)
    mean = AudioCNNLSTM(3, readout="mean").eval()
    last = AudioCNNLSTM(3, readout="last").eval()
    last.load_state_dict(mean.state_dict())
    x = torch.randn(2, 1, 16_000)
    with torch.no_grad():
        out, _ = mean.lstm(mean.features(mean.frames(x)).transpose(1, 2))
        torch.testing.assert_close(mean(x), mean.head(out.mean(1)))
        torch.testing.assert_close(last(x), mean.head(out[:, -1]))


# ---------------------------------------------------------------------- classifier
def _sines(n: int, seed: int, seconds: float = 0.5):
    """Windows of a 200 Hz (class 0) or 800 Hz (class 1) sine, random phase/amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = np.arange(n) % 2
    f = np.where(y == 0, 200.0, 800.0)[:, None]
    amp = rng.uniform(0.3, 1.0, size=(n, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    X = amp * np.sin(2 * np.pi * f * t[None] + phase) + 0.05 * rng.normal(size=(n, t.size))
    return X.astype(np.float32), y


def test_overfits_tiny_sine_task():
    X, y = _sines(16, seed=0)
    clf = AudioCNNLSTMClassifier(
        epochs=25, lr=3e-3, validation_fraction=0.0, random_state=0, **TINY
    ).fit(X, y)
    assert clf.score(X, y) == 1.0
    proba = clf.predict_proba(X)
    assert proba.shape == (16, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]


def test_classifier_deterministic_and_defaults():
    X, y = _sines(8, seed=1)
    p1 = AudioCNNLSTMClassifier(epochs=2, random_state=3, **TINY).fit(X, y).predict_proba(X)
    p2 = AudioCNNLSTMClassifier(epochs=2, random_state=3, **TINY).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)
    default = AudioCNNLSTMClassifier()
    assert default.lr == 0.00025 and default.dropout == 0.3 and default.class_weight_r == 0.34


def test_classifier_validation_set_and_masked_labels():
    X, y = _sines(12, seed=2)
    y = y.copy()
    y[:2] = -1
    Xv, yv = _sines(6, seed=3)
    clf = AudioCNNLSTMClassifier(
        epochs=3, patience=None, class_weight="log", random_state=0, **TINY
    ).fit(X, y, X_val=Xv, y_val=yv)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert len(clf.history_) == 3
    assert all(h["val_loss"] is not None for h in clf.history_)
    with pytest.raises(ValueError):
        clf.predict_proba(X[:, :100])  # wrong window length


@pytest.mark.gpu
def test_classifier_on_cuda():
    X, y = _sines(8, seed=4)
    clf = AudioCNNLSTMClassifier(epochs=2, device="cuda", random_state=0, **TINY).fit(X, y)
    assert next(clf.module_.parameters()).is_cuda
    assert clf.predict_proba(X).shape == (8, 2)


def test_output_does_not_depend_on_the_recording_level():
    torch.manual_seed(0)
    net = AudioCNNLSTM(3).eval()
    x = torch.randn(2, 1, 4096) * 0.01
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x * 300.0), rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------- augmentation
def test_augment_is_a_circular_shift_plus_noise_at_the_drawn_snr():
    x = torch.randn(6, 1, 4000)
    clean = augment_waveforms(x, torch.Generator().manual_seed(0), snr_db=(300.0, 300.0))
    for row, out in zip(x[:, 0].numpy(), clean[:, 0].numpy()):
        shifts = [s for s in range(4000) if np.allclose(np.roll(row, -s), out, atol=1e-5)]
        assert len(shifts) == 1  # exactly one rotation of the input
    noisy = augment_waveforms(x, torch.Generator().manual_seed(0), snr_db=(10.0, 10.0))
    noise = noisy - clean  # same generator: same shifts, noise added on top
    ratio = (noise.pow(2).mean(-1) / clean.pow(2).mean(-1)).numpy()
    np.testing.assert_allclose(ratio, 0.1, rtol=0.15)  # 10 dB
    again = augment_waveforms(x, torch.Generator().manual_seed(0), snr_db=(10.0, 10.0))
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    assert x.shape == noisy.shape


def test_training_augments_train_batches_only_and_decays_the_lr(monkeypatch):
    X, y = _sines(12, seed=5)
    Xv, yv = _sines(6, seed=6)
    seen = []
    clf = AudioCNNLSTMClassifier(
        epochs=4, lr=1e-3, patience=None, cosine=True, random_state=0, **TINY
    )

    def counting(xb, generator):  # the real augmentation, counting the windows it gets
        seen.append(xb.shape[0])
        return augment_waveforms(xb, generator)

    monkeypatch.setattr("pipeline.models.audio_cnn_lstm.augment_waveforms", counting)
    clf.set_params(augment=True).fit(X, y, X_val=Xv, y_val=yv)
    assert sum(seen) == 4 * 12  # every training window once per epoch, no validation window
    lrs = [h["lr"] for h in clf.history_]
    np.testing.assert_allclose(lrs, [1e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])


def test_weight_average_returns_the_averaged_weights():
    """ema -> 0 keeps the last weights (the same run as without averaging); ema -> 1 keeps
    the weights of the first step (the average barely moves from its first value)."""
    X, y = _sines(16, seed=7)
    base = dict(TINY, epochs=3, lr=3e-3, validation_fraction=0.0, random_state=0)
    fit = lambda **kw: AudioCNNLSTMClassifier(**{**base, **kw}).fit(X, y)  # noqa: E731
    plain, near_last = fit(), fit(ema=1e-12)
    for a, b in zip(plain.module_.state_dict().values(), near_last.module_.state_dict().values()):
        torch.testing.assert_close(a, b)
    first_step = fit(epochs=1, batch_size=16, ema=None)  # one batch of 16 = one step
    near_first = fit(ema=1 - 1e-12, batch_size=16)
    w = lambda m: m.module_.head.weight  # noqa: E731
    torch.testing.assert_close(w(near_first), w(first_step))
    assert not torch.allclose(w(near_first), w(plain))


def test_spec_masks_zero_bands_and_stretches_in_training_only():
    torch.manual_seed(0)
    model = AudioCNNLSTM(3, spec_masks=2)
    keep = model._masks(torch.Size([64, 40, 201]))
    for item in keep:
        dropped_filters = (item == 0).all(dim=1).sum()  # a band: zero at every frame
        dropped_frames = (item == 0).all(dim=0).sum()  # a stretch: zero in every filter
        assert dropped_filters <= 2 * 8 and dropped_frames <= 2 * 20
        assert ((item == 0) == ((item == 0).all(1)[:, None] | (item == 0).all(0)[None])).all()
    assert (keep == 0).any(dim=(1, 2)).float().mean() > 0.8  # nearly every item masked
    plain = AudioCNNLSTM(3, spec_masks=0)
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 16_000)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), plain.eval()(x))  # no masks at inference
        model.train(), plain.train()
        torch.manual_seed(1)
        a = model.features(model.frames(x) * model._masks(model.frames(x).shape))
        assert not torch.allclose(a, plain.features(model.frames(x)))
