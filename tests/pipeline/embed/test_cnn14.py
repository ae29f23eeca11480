"""Tests for pipeline.embed.cnn14: official checkpoint format, front end, windowing."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from pipeline.embed.cnn14 import (
    SAMPLE_RATE_HZ,
    Cnn14,
    LogMelFrontEnd,
    audio_windows,
    embed_cnn14,
    front_end_reference_state,
    load_cnn14,
)

_WIDTHS = (1, 64, 128, 256, 512, 1024, 2048)


def _official_front_end() -> dict[str, torch.Tensor]:
    """Front-end tensors computed as torchlibrosa does (complex DFT matrix x Hann)."""
    n_fft = 1024
    n = np.arange(n_fft)
    dft = np.exp(-2j * np.pi * np.outer(n, n) / n_fft)[:, : n_fft // 2 + 1]
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    kernels = (dft * window[:, None]).T[:, None, :]  # (513, 1, 1024)
    mel = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    f32 = torch.float32
    return {
        "spectrogram_extractor.stft.conv_real.weight": torch.tensor(np.real(kernels), dtype=f32),
        "spectrogram_extractor.stft.conv_imag.weight": torch.tensor(np.imag(kernels), dtype=f32),
        "logmel_extractor.melW": torch.tensor(mel, dtype=f32),
    }


def _official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random CNN14 weights under the key names and shapes of ``Cnn14_mAP=0.431.pth``."""
    gen = torch.Generator().manual_seed(seed)

    def bn(prefix: str, c: int) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.weight": torch.rand(c, generator=gen) + 0.5,
            f"{prefix}.bias": torch.randn(c, generator=gen) * 0.1,
            f"{prefix}.running_mean": torch.randn(c, generator=gen) * 0.1,
            f"{prefix}.running_var": torch.rand(c, generator=gen) + 0.5,
            f"{prefix}.num_batches_tracked": torch.randint(1, 10**6, (), generator=gen),
        }

    state = dict(_official_front_end())
    state.update(bn("bn0", 64))
    for i in range(1, 7):
        c_in, c_out = _WIDTHS[i - 1], _WIDTHS[i]
        for conv, fan_in in (("conv1", c_in), ("conv2", c_out)):
            std = (2 / (9 * fan_in)) ** 0.5
            weight = torch.randn(c_out, fan_in, 3, 3, generator=gen) * std
            state[f"conv_block{i}.{conv}.weight"] = weight
        state.update(bn(f"conv_block{i}.bn1", c_out))
        state.update(bn(f"conv_block{i}.bn2", c_out))
    state["fc1.weight"] = torch.randn(2048, 2048, generator=gen) * (1 / 2048) ** 0.5
    state["fc1.bias"] = torch.randn(2048, generator=gen) * 0.1
    state["fc_audioset.weight"] = torch.randn(527, 2048, generator=gen) * (1 / 2048) ** 0.5
    state["fc_audioset.bias"] = torch.randn(527, generator=gen) * 0.1
    return state


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """``Cnn14_mAP=0.431.pth`` look-alike, laid out as PANNs' main.py saves it."""
    state = _official_state_dict()
    path = tmp_path_factory.mktemp("cnn14") / "Cnn14_mAP=0.431.pth"
    sampler = {"indexes": np.arange(10, dtype=np.int64), "pointer": 3}  # numpy, as in PANNs
    torch.save({"iteration": 600000, "model": state, "sampler": sampler}, path)
    return path, state


@pytest.fixture(scope="module")
def loaded(official_ckpt) -> Cnn14:
    return load_cnn14(official_ckpt[0])


def test_load_official_format_every_tensor_equals_file(official_ckpt, loaded):
    _, state = official_ckpt
    model_state = loaded.state_dict()
    assert set(model_state) == set(state)
    for key, value in state.items():
        assert torch.equal(model_state[key], value), key
    assert not loaded.training


def test_front_end_matches_reference_and_librosa(loaded):
    mel = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    np.testing.assert_allclose(loaded.logmel_extractor.melW.numpy(), mel, rtol=0, atol=1e-7)
    ours = front_end_reference_state()
    for key, value in _official_front_end().items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-5)


def test_forward_shapes_and_eval_determinism(loaded):
    wave = torch.randn(2, SAMPLE_RATE_HZ, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        first, second = loaded(wave), loaded(wave)
    assert first["embedding"].shape == (2, 2048)
    assert first["clipwise_output"].shape == (2, 527)
    assert torch.all((first["clipwise_output"] >= 0) & (first["clipwise_output"] <= 1))
    assert torch.all(first["embedding"] >= 0)  # post-ReLU
    assert torch.equal(first["embedding"], second["embedding"])
    assert torch.equal(first["clipwise_output"], second["clipwise_output"])


def _light(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same names and shapes, but network weights as stride-0 views of one stored value.

    Keeps the error-case files small (only shapes matter there); the front end stays real.
    """
    return {
        k: v
        if k.startswith(("spectrogram_", "logmel_")) or v.ndim == 0
        else v.reshape(-1)[:1].clone().expand(v.shape)
        for k, v in state.items()
    }


def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "conv_block3.bn1.running_var"),
        ("shape", "fc_audioset.weight"),
        ("unexpected", "spec_augmenter.weight"),
        ("front_end", "logmel_extractor.melW"),
        ("no_model_key", "'model'"),
        ("not_a_checkpoint", "not a readable PyTorch checkpoint"),
    ],
)
def test_bad_checkpoint_raises_naming_file(official_ckpt, tmp_path, case, needle):
    state = _light(official_ckpt[1])
    path = tmp_path / f"bad_{case}.pth"
    if case == "missing":
        torch.save({"model": _without(state, "conv_block3.bn1.running_var")}, path)
    elif case == "shape":
        torch.save({"model": {**state, "fc_audioset.weight": torch.zeros(10, 2048)}}, path)
    elif case == "unexpected":
        torch.save({"model": {**state, "spec_augmenter.weight": torch.zeros(1)}}, path)
    elif case == "front_end":
        melw = state["logmel_extractor.melW"] * 2
        torch.save({"model": {**state, "logmel_extractor.melW": melw}}, path)
    elif case == "no_model_key":
        torch.save({"state_dict": {"fc1.bias": torch.zeros(2048)}}, path)
    else:
        path.write_text("this is not a checkpoint\n")
    with pytest.raises(ValueError) as err:
        load_cnn14(path)
    assert path.name in str(err.value)
    assert needle in str(err.value)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_cnn14(tmp_path / "nope.pth")


def test_log_mel_matches_librosa_on_emodb(emodb_dir):
    wav = sorted(emodb_dir.glob("*.wav"))[0]
    y, sr = sf.read(wav, dtype="float32")
    y = librosa.resample(y, orig_sr=sr, target_sr=32000)
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=y,
            sr=32000,
            n_fft=1024,
            hop_length=320,
            n_mels=64,
            fmin=50,
            fmax=14000,
            power=2.0,
            center=True,
            pad_mode="reflect",
        ),
        ref=1.0,
        amin=1e-10,
        top_db=None,
    )  # (64, T) dB
    with torch.no_grad():
        got = LogMelFrontEnd()(torch.from_numpy(y)[None])[0, 0].numpy().T
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=0.01)  # dB; float32 conv vs FFT


def test_audio_windows_10s_at_16k():
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 10).astype(np.float32)
    windows, centres = audio_windows(wave, 16000)
    assert windows.shape == (8, 3 * 32000)
    assert windows.dtype == np.float32
    np.testing.assert_allclose(centres, np.arange(8) + 1.5)


def test_audio_windows_content_and_padded_tail():
    y = np.linspace(-1, 1, int(32000 * 10.5), dtype=np.float32)
    windows, centres = audio_windows(y, 32000)
    assert len(windows) == 9  # 1 + ceil((10.5 - 3) / 1): the last window covers the end
    np.testing.assert_allclose(centres, np.arange(9) + 1.5)
    for i in range(8):
        np.testing.assert_array_equal(windows[i], y[i * 32000 : i * 32000 + 96000])
    tail = y[8 * 32000 :]
    np.testing.assert_array_equal(windows[8, : len(tail)], tail)
    assert not windows[8, len(tail) :].any()


def test_audio_windows_short_input_gives_one_padded_window():
    wave = np.ones(22050, dtype=np.float32)  # 1 s at 22.05 kHz
    windows, centres = audio_windows(wave, 22050)
    assert windows.shape == (1, 96000)
    np.testing.assert_allclose(centres, [1.5])
    assert windows[0, :30000].min() > 0.9
    assert not windows[0, 33000:].any()
    with pytest.raises(ValueError):
        audio_windows(np.zeros(0, np.float32), 16000)


def test_embed_cnn14_shapes_and_batching(loaded):
    wave = np.random.default_rng(2).uniform(-0.3, 0.3, 16000 * 4).astype(np.float32)
    emb, centres = embed_cnn14(loaded, wave, 16000, batch_size=1)
    assert emb.shape == (2, 2048) and emb.dtype == np.float32
    np.testing.assert_allclose(centres, [1.5, 2.5])
    windows, _ = audio_windows(wave, 16000)
    with torch.no_grad():  # second window only: checks order without a third full pass
        direct = loaded(torch.from_numpy(windows[1:]))["embedding"].numpy()
    np.testing.assert_allclose(emb[1:], direct, rtol=1e-3, atol=1e-4)
    assert not np.allclose(emb[0], emb[1])
