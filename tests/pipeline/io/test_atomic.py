"""Atomic writes: temporaries live outside every DVC-tracked path and vanish after a kill."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.io.atomic import SCRATCH, atomic_path, write_json

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "data" / "faces").mkdir(parents=True)
    return tmp_path


def test_temporary_lives_in_the_dvc_scratch_folder_not_beside_the_output(project):
    out_dir = project / "data" / "faces"
    with atomic_path(out_dir / "v1.h5") as tmp:
        tmp.write_text("partial")
        assert (project / SCRATCH) in tmp.parents
        assert list(out_dir.iterdir()) == []  # nothing inside the tracked folder while writing
    assert (out_dir / "v1.h5").read_text() == "partial"
    assert list((project / SCRATCH).iterdir()) == []


def test_folder_output_replaces_the_old_one_and_a_failure_keeps_it(project):
    dst = project / "models" / "fit" / "kelm_fer"
    with atomic_path(dst) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
        raise RuntimeError("killed halfway")
    assert sorted(p.name for p in dst.iterdir()) == ["a"]
    assert sorted(p.name for p in dst.parent.iterdir()) == ["kelm_fer"]
    assert list((project / SCRATCH).iterdir()) == []


def test_outside_a_dvc_project_the_temporary_goes_beside_the_output(tmp_path):
    with atomic_path(tmp_path / "x.json") as tmp:
        assert tmp.parent.parent == tmp_path
        tmp.write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_sigkill_mid_write_leaves_nothing_in_the_output_and_the_next_write_sweeps_it(project):
    out = project / "models" / "fit" / "kelm_fer"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from pipeline.io.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.mkdir()\n"
        "    (tmp / 'model.joblib').write_bytes(b'x' * 1000)\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "writing"
    leftovers = list((project / SCRATCH).iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(f".avemo-{proc.pid}-")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.1)
    assert not out.exists() and list(out.parent.iterdir()) == []  # the tracked folder is clean
    write_json(project / "reports" / "r.json", {})  # any later write removes the dead temp
    assert list((project / SCRATCH).iterdir()) == []
