"""The whole pipeline with `dvc repro` on a small demo in a git copy of the project.

Checks that every stage runs and writes what the next one reads, that the metrics come out,
that a second `dvc repro` runs nothing, and the experiment workflow of the README:
`dvc exp run -S` re-runs only the stages that read the changed parameter, `dvc metrics diff`
and `dvc exp show` show the change, a `--queue`d sweep runs with `dvc queue start -j 2`, and
`-S base.task=va` reaches the labels (and per-video outputs are reused). A
stage killed with SIGKILL at several points leaves no trace: the next `dvc repro` gives the
same dvc.lock (every output hash) as the uninterrupted run. The tests share one project and
run in file order.
"""

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.io.h5 import iter_groups
from tests.small_model_set import SMALL_NETS, SMALL_SEED003

ROOT = Path(__file__).resolve().parents[2]

SMALL = {  # params overrides: 4 short videos, one backbone per modality, few epochs and draws
    "make_demo": {
        "n_videos": 4,
        "duration_s": [8, 10],
        "split_counts": {"train": 2, "dev": 1, "test": 1},
    },
    # the batched torch MTCNN (same boxes as the package, no TensorFlow: 50 s less per run);
    # the mtcnn package itself: tests/pipeline/video
    "detect_faces": {"fps": 2.5, "detector": "mtcnn_torch", "batch_size": 8},
    "separate_vocals": {"method": "none"},  # Spleeter: tests/pipeline/audio
    "embed_faces": {"backbones": {"fer_xception": {"weights": None, "enhance": "none"}}},
    "finetune_faces": {"epochs": 1, "oof_folds": 0},  # out-of-fold: tests/pipeline/embed
    "embed_audio": {"backbones": {"mfcc": {"weights": None}}},
    "window_stats": {
        "window_s": 2.0,
        "features": {
            "fer": "faces/fer_xception",
            "mfcc": "audio/mfcc",
        },
    },
    "fit": {"models": ["svm", "kelm"], "features": ["fer", "mfcc"]},
    "fit_raw_audio": {"epochs": 2},
    "fit_fusion_net": {
        "audio": "audio/mfcc",
        "epochs": 2,
        "nets": SMALL_NETS,
    },
    "fuse": {"n_draws": 200},
    "evaluate": {"timeline_videos": 1},
    **SMALL_SEED003,  # no pre-training corpus here: skip records, tiny feature-level fusion
}


ENV = dict(
    os.environ,
    PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    DVC_NO_ANALYTICS="1",
    GIT_AUTHOR_NAME="t",
    GIT_AUTHOR_EMAIL="t@t",
    GIT_COMMITTER_NAME="t",
    GIT_COMMITTER_EMAIL="t@t",
)


def _run(cwd, *cmd):
    proc = subprocess.run(list(cmd), cwd=cwd, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _dvc(cwd, *args):
    return _run(cwd, sys.executable, "-m", "dvc", *args)


def _ran(output):
    return sorted(
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    dst = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dst / name)
    for name in ("pipeline", "stages", "data/pretrain"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(ROOT / ".gitignore", dst / ".gitignore")
    _run(dst, "git", "init", "-q")
    _dvc(dst, "init", "-q")
    _dvc(dst, "config", "core.analytics", "false")
    _run(dst, "git", "add", "-A")
    _run(dst, "git", "commit", "-qm", "project")
    return dst


@pytest.mark.network
@pytest.mark.slow
def test_full_pipeline_then_nothing_to_run(project):
    first = _dvc(project, "repro")
    for stage in (
        "get_pretrained",
        "make_demo",
        "build_manifest",
        "detect_faces",
        "extract_audio",
        "separate_vocals",
        "resample_labels",
        "embed_faces@fer_xception",
        "finetune_faces",
        "embed_audio@mfcc",
        "window_stats@fer",
        "fit@svm-fer",
        "fit@kelm-mfcc",
        "fit_raw_audio@cnn_lstm_raw",
        "fit_raw_audio@spec_attention",
        "fit_fusion_net@conv_lstm",
        "fit_fusion_net@attention_fbp",
        "pretrain_faces",
        "pretrain_audio",
        "pretrain_vggish",
        "distil_faces",
        "fit_feature_fusion",
        "fuse",
        "evaluate",
    ):
        assert f"Running stage '{stage}'" in first, stage
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics) == {"dev", "test"}
    assert {
        "svm_fer",
        "kelm_mfcc",
        "cnn_lstm_raw",
        "spec_attention",
        "conv_lstm",
        "attention_fbp",
        "feature_fusion",
        "fusion_swf",
    } <= set(metrics["dev"])
    # no pre-training corpus in the project: the checkpoints say so, fusion started at random
    assert "skipped" in json.loads((project / "reports/pretrain_faces.json").read_text())
    assert "skipped" in json.loads((project / "reports/distil_faces.json").read_text())
    fusion_report = json.loads((project / "models/fit/feature_fusion/report.json").read_text())
    assert fusion_report["init"]["faces"].startswith("random (pre-training skipped: ")
    for m in metrics["dev"].values():
        assert 0 <= m["cpm"] <= 1 and m["cpm"] == pytest.approx(
            0.67 * m["macro_f1"] + 0.33 * m["accuracy"], abs=1e-5
        )
    assert (project / "reports/summary.md").read_text().startswith("# Results")
    assert any(p.suffix == ".png" for p in (project / "reports/figures").iterdir())
    shown = subprocess.run(  # stdout only: the JSON
        [sys.executable, "-m", "dvc", "plots", "show", "--json"],
        cwd=project, env=ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    plots = json.loads(shown.stdout)  # every learning curve drawn
    curves = plots["data"]["torch_learning_curves"][0]["content"]["data"]["values"]
    drawn = {v["filename::field"] for v in curves}
    nets = ("cnn_lstm_raw", "spec_attention", "conv_lstm", "attention_fbp", "feature_fusion")
    assert drawn == {f"{m}/history.csv::{y}" for m in nets for y in ("train_loss", "val_loss")}
    assert not plots.get("errors"), plots["errors"]
    weights = json.loads((project / "models/fuse/mcwf/weights.json").read_text())
    cols = list(zip(*weights["weights"]))  # MCWF: per class, weights over models sum to 1
    assert all(abs(sum(c) - 1) < 1e-4 for c in cols)

    second = _dvc(project, "repro")
    assert "Running stage" not in second, second
    assert "Data and pipelines are up to date" in _dvc(project, "status")
    _run(project, "git", "add", "-A")
    _run(project, "git", "commit", "-qm", "baseline results")


def _kill_when_writing(project, stage, timeout_s=240):
    """`dvc repro -f -s stage` with real recomputation; SIGKILL its whole process group as
    soon as a temporary output appears. Returns True if it was caught mid-write."""
    scratch = project / ".dvc" / "tmp" / "avemo"
    env = dict(ENV, AVEMO_RECOMPUTE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "-f", "-s", stage],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    caught = False
    while proc.poll() is None and time.monotonic() < deadline:
        if scratch.is_dir() and any(scratch.glob(".avemo-*")):
            caught = True
            break
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return caught


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["detect_faces", "embed_faces@fer_xception", "fit@kelm-fer"])
def test_a_killed_stage_leaves_no_trace(project, stage):
    baseline = (project / "dvc.lock").read_text()
    assert _kill_when_writing(project, stage), f"{stage} finished before a write was seen"
    rerun = _dvc(project, "repro")  # a persist output survives whole, so nothing may re-run
    downstream = {"fit@kelm-fer": ["fuse", "evaluate"]}.get(stage, [])
    for later in downstream:  # an unchanged output re-runs nothing after it
        assert f"Running stage '{later}'" not in rerun, rerun
    assert (project / "dvc.lock").read_text() == baseline
    assert "Data and pipelines are up to date" in _dvc(project, "status")
    leftovers = [
        p for p in project.rglob("*") if p.name.startswith(".avemo-") or p.suffix == ".tmp"
    ]
    assert all(".dvc" in p.parts for p in leftovers), leftovers  # only in DVC's own tmp folder


@pytest.mark.network
@pytest.mark.slow
def test_experiments_queue_and_va(project):
    assert "Data and pipelines are up to date" in _dvc(project, "status")

    # an experiment re-runs only the stages that read the changed parameter
    exp = _dvc(project, "exp", "run", "-S", "fit.kelm.C=0.01")
    assert _ran(exp) == ["evaluate", "fit@kelm-fer", "fit@kelm-mfcc", "fuse"], exp
    assert "cpm" in _dvc(project, "metrics", "diff")  # something changed
    assert "dev.kelm_fer.cpm" in _dvc(project, "metrics", "diff", "--all")
    # a queued sweep, two workers
    for c in ("1", "30"):
        _dvc(project, "exp", "run", "--queue", "-S", f"fit.kelm.C={c}")
    # The workers are daemons: given this process's pipes (capture_output), they would keep
    # them open after the start command exits and the read would wait for them (seen: an
    # idle pair kept a CI run waiting for 30 min). They write nowhere and are stopped after.
    dvc = [sys.executable, "-m", "dvc", "queue"]
    quiet = dict(cwd=project, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*dvc, "start", "-j", "2"], check=True, **quiet)
    try:
        for _ in range(300):  # bounded wait (10 min), then check
            status = _dvc(project, "queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(2)
    finally:
        subprocess.run([*dvc, "stop"], timeout=300, **quiet)
    assert status.count("Success") == 2, status
    rows = list(
        csv.DictReader(
            io.StringIO(_run(project, sys.executable, "-m", "dvc", "exp", "show", "--csv"))
        )
    )
    assert {"1", "0.01", "30"} <= {r["fit.kelm.C"] for r in rows}
    assert all(r["dev.fusion_mcwf.cpm"] for r in rows if r["fit.kelm.C"] in ("1", "30"))

    # valence/arousal through DVC: base.task reaches the labels, and per-video outputs are
    # reused when the manifest changes. Every model's VA path and evaluate on VA run through
    # the stage entry points in tests/pipeline/test_predict.py (a fraction of a DVC run).
    va = _dvc(project, "exp", "run", "-S", "base.task=va", "detect_faces", "resample_labels")
    # the manifest now lists VA label files, so detect_faces runs, but reuses every video's faces
    assert "detect_faces: 4 videos in" in va and "'done': 0, 'reused': 4" in va, va
    faces = json.loads((project / "data/interim/faces_report.json").read_text())
    assert faces["counts"]["done"] == 4
    assert all(v["frames"] > 0 for v in faces["videos"].values())  # statistics kept on reuse
    labels = dict(iter_groups(project / "data/interim/labels_5hz.h5", ["va"]))
    assert len(labels) == 4 and all(
        g["va"].shape[1] == 2 and np.nanmax(np.abs(g["va"])) <= 1 for g in labels.values()
    )
