"""`dvc repro` on a small demo in a copy of the project; a second repro runs nothing."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _dvc(cwd, *args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1")
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project (code, dvc.yaml, params) with a 3-video demo."""
    dst = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dst / name)
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["make_demo"].update(n_videos=3, duration_s=[4, 6], split_counts={"train": 1, "dev": 1, "test": 1})
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(dst, "init", "--no-scm", "-q")
    return dst


@pytest.mark.network
@pytest.mark.slow
def test_repro_then_nothing_to_run(project):
    first = _dvc(project, "repro")
    for stage in ("get_pretrained", "make_demo", "build_manifest"):
        assert f"Running stage '{stage}'" in first
    rows = (project / "data/interim/manifest.csv").read_text().splitlines()
    assert len(rows) == 4 and {r.split(",")[2] for r in rows[1:]} == {"train", "dev", "test"}
    assert (project / "models/pretrained/spleeter/2stems/model.index").is_file()
    second = _dvc(project, "repro")
    assert "Running stage" not in second, second
    assert "Data and pipelines are up to date" in _dvc(project, "status")
