"""Shared fixtures: paths to the real data beside the checkout, and skip helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


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
