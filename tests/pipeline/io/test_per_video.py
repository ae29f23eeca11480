"""Per-video runner: reuse of fresh outputs, invalidation, stale files, skips and failures."""

import os
from functools import partial

import numpy as np
import pytest

from pipeline.io import h5
from pipeline.io.per_video import (
    FailedVideos,
    Outcome,
    VideoJob,
    run_and_report,
    run_per_video,
)


def _work(job, digest, scale=1.0, calls=None):
    assert not job.info.get("skip"), "the runner handles skips; no worker runs for them"
    if job.info.get("fail"):
        raise RuntimeError("decoder exploded")
    if calls is not None:
        calls.append(job.video_id)
    x = np.loadtxt(job.inputs[0], ndmin=1) * scale
    h5.write_h5(job.out, {job.video_id: {"x": x}}, params_digest=digest, report={"n": len(x)})


def _jobs(tmp_path, ids, **info):
    jobs = []
    for v in ids:
        src = tmp_path / "in" / f"{v}.txt"
        src.parent.mkdir(parents=True, exist_ok=True)
        if not src.exists():
            src.write_text("1 2 3")
        jobs.append(VideoJob(v, (src,), tmp_path / "out" / f"{v}.h5", dict(info.get(v, {}))))
    return jobs


def _run(tmp_path, jobs, calls, scale=1.0):
    return run_per_video(
        jobs,
        partial(_work, scale=scale, calls=calls),
        out_dir=tmp_path / "out",
        params={"scale": scale},
        code="c1",
        n_jobs=1,
        desc="test",
    )


def test_second_run_reuses_and_new_video_costs_one(tmp_path):
    calls = []
    out = _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls)
    assert calls == ["a", "b"] and out["a"].status == "done" and out["a"].detail == {"n": 3}
    calls.clear()
    out = _run(tmp_path, _jobs(tmp_path, ["a", "b", "c"]), calls)
    assert calls == ["c"] and out["a"].status == "reused"
    assert out["a"].detail == {"n": 3}  # a reused video keeps the statistics it was made with


def test_report_of_a_resumed_run_equals_a_clean_run(tmp_path):
    jobs = _jobs(tmp_path, ["a", "b", "c"], b={"skip": "no audio track"})
    kw = dict(out_dir=tmp_path / "out", params={}, code="c", n_jobs=1, desc="test")
    run_and_report(jobs, _work, report_path=tmp_path / "clean.json", **kw)
    (tmp_path / "out" / "c.h5").unlink()  # as if killed before c was written
    run_and_report(jobs, _work, report_path=tmp_path / "resumed.json", **kw)
    clean = (tmp_path / "clean.json").read_bytes()
    assert clean == (tmp_path / "resumed.json").read_bytes()
    assert b'"n": 3' in clean


def test_recompute_env_ignores_fresh_outputs(tmp_path, monkeypatch):
    calls = []
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls)
    monkeypatch.setenv("AVEMO_RECOMPUTE", "1")
    calls.clear()
    out = _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls)
    assert calls == ["a", "b"] and out["a"].status == "done"


def test_leftovers_in_the_output_folder_are_removed(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".a.h5.123.tmp").write_text("half-written by an old version")
    (tmp_path / "out" / "junk").mkdir()
    _run(tmp_path, _jobs(tmp_path, ["a"]), [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.h5"]


def test_params_or_input_change_recomputes(tmp_path):
    calls = []
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls)
    calls.clear()
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls, scale=2.0)
    assert calls == ["a", "b"]
    np.testing.assert_array_equal(h5.read_group(tmp_path / "out" / "a.h5", "a")["x"], [2, 4, 6])
    calls.clear()
    (tmp_path / "in" / "b.txt").write_text("5")
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls, scale=2.0)
    assert calls == ["b"]


def test_removed_video_output_is_deleted(tmp_path):
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), [])
    _run(tmp_path, _jobs(tmp_path, ["b"]), [])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.h5"]


def test_skip_and_failure_are_reported_and_failure_raises(tmp_path):
    jobs = _jobs(tmp_path, ["a", "b", "c"], b={"skip": "no audio track"}, c={"fail": True})
    report = tmp_path / "report.json"
    with pytest.raises(
        FailedVideos, match=r"1 of 3 videos failed, e.g. c: RuntimeError: decoder exploded"
    ):
        run_and_report(
            jobs,
            _work,
            report_path=report,
            out_dir=tmp_path / "out",
            params={},
            code="c",
            n_jobs=1,
            desc="test",
        )
    import json

    rep = json.loads(report.read_text())
    assert rep["counts"] == {"done": 1, "skipped": 1, "failed": 1}
    assert rep["videos"]["b"] == {"status": "skipped", "reason": "no audio track"}
    assert not (tmp_path / "out" / "b.h5").exists() and not (tmp_path / "out" / "c.h5").exists()
    assert (tmp_path / "out" / "a.h5").exists()  # finished videos are kept for the rerun


def test_a_video_that_lost_its_stream_loses_its_old_output(tmp_path):
    calls = []
    _run(tmp_path, _jobs(tmp_path, ["a", "b"]), calls)
    assert (tmp_path / "out" / "b.h5").exists()
    out = _run(tmp_path, _jobs(tmp_path, ["a", "b"], b={"skip": "no audio track"}), calls)
    assert out["b"] == Outcome("skipped", {"reason": "no audio track"})
    assert not (tmp_path / "out" / "b.h5").exists() and calls == ["a", "b"]


def test_a_corpus_without_the_stream_starts_no_worker(tmp_path, monkeypatch):
    import pipeline.io.per_video as pv

    monkeypatch.setattr(pv, "Parallel", None)  # any dispatch would fail
    monkeypatch.setattr(pv, "job_digest", None)  # and so would hashing an input
    jobs = _jobs(tmp_path, ["a", "b"], a={"skip": "no audio track"}, b={"skip": "no audio track"})
    out = _run(tmp_path, jobs, [])
    assert {v: o.status for v, o in out.items()} == {"a": "skipped", "b": "skipped"}


def test_runtime_enters_the_digest_and_reaches_the_worker(tmp_path):
    from pipeline.io.per_video import runtime

    calls, seen = [], []

    def work(job, digest):
        seen.append(job.info["runtime"])
        _work(job, digest, calls=calls)

    kw = dict(out_dir=tmp_path / "out", params={}, code="c", n_jobs=1, desc="test")
    cpu = runtime(["numpy"], "cpu")
    assert cpu == {"device": "cpu", "versions": {"numpy": np.__version__}}
    run_per_video(_jobs(tmp_path, ["a"]), work, runtime=cpu, **kw)
    run_per_video(_jobs(tmp_path, ["a"]), work, runtime=cpu, **kw)
    assert calls == ["a"] and seen == [cpu]  # same runtime: reused
    run_per_video(_jobs(tmp_path, ["a"]), work, runtime={**cpu, "device": "cuda (H200)"}, **kw)
    assert calls == ["a", "a"]  # computed elsewhere: never reused as if computed here


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_one_log_line_per_finished_video_and_outcomes_in_manifest_order(tmp_path, caplog, n_jobs):
    jobs = _jobs(tmp_path, ["c", "a", "b"], b={"skip": "no audio track"})
    with caplog.at_level("INFO", logger="pipeline.io.per_video"):
        out = run_per_video(
            jobs, _work, out_dir=tmp_path / "out", params={}, code="c", n_jobs=n_jobs, desc="st"
        )
    assert list(out) == ["c", "a", "b"]  # the jobs' order, whatever order they finished in
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("st: ")]
    per_video = sorted(m.split(" (")[0] for m in lines if " of 3)" in m)
    assert per_video == ["st: a done", "st: b skipped", "st: c done"]
    assert "{'done': 2, 'reused': 0, 'skipped': 1, 'failed': 0}" in lines[-1]


def test_dask_executor_gives_the_same_files_as_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    local = _jobs(tmp_path / "l", ["a", "b", "c"], b={"skip": "no audio track"})
    run_per_video(
        local, _work, out_dir=tmp_path / "l" / "out", params={}, code="c", n_jobs=1, desc="t"
    )
    jobs = _jobs(tmp_path / "d", ["a", "b", "c"], b={"skip": "no audio track"})
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = run_per_video(
            jobs,
            _work,
            out_dir=tmp_path / "d" / "out",
            params={},
            code="c",
            n_jobs=1,
            desc="t",
            executor="dask",
            scheduler=cluster.scheduler_address,
        )
    assert {v: o.status for v, o in out.items()} == {"a": "done", "b": "skipped", "c": "done"}
    for v in ("a", "c"):
        assert (tmp_path / "d" / "out" / f"{v}.h5").read_bytes() == (
            tmp_path / "l" / "out" / f"{v}.h5"
        ).read_bytes()


def test_unreachable_dask_scheduler_is_one_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from pipeline.errors import PipelineError
    from pipeline.io import per_video

    monkeypatch.setattr(per_video, "DASK_CONNECT_TIMEOUT_S", 1)
    with pytest.raises(PipelineError, match=r"base.dask_scheduler: cannot reach .*127.0.0.1:9"):
        run_per_video(
            _jobs(tmp_path, ["a"]),
            _work,
            out_dir=tmp_path / "out",
            params={},
            code="c",
            n_jobs=1,
            desc="t",
            executor="dask",
            scheduler="tcp://127.0.0.1:9",
        )


def _grouped_items(root, ids):
    items = []
    for i, v in enumerate(ids):
        src = root / f"{v}.txt"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(" ".join(str(i + k) for k in range(4)))
        items.append((v, src))
    return items


def _embed_with(net, pids, vid, src):
    """A grouped-file ``compute`` that holds a model, as the embedding stages' do; appends the
    id of the process that ran it to the file ``pids``."""
    import os

    import torch

    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\n")
    x = torch.from_numpy(np.loadtxt(src, ndmin=1).astype(np.float32))[:, None]
    with torch.no_grad():
        return {"x": net(x).numpy()}, {"source": src.name}


def test_grouped_file_on_dask_is_the_local_file_and_reuses_groups(tmp_path):
    """Embedding stages on a cluster of 2 worker processes: the model reaches the workers, the
    file is byte-identical to a local run's, and a rerun with one new video computes only it."""
    distributed = pytest.importorskip("distributed")
    import torch

    from pipeline.io.per_video import build_grouped_file

    torch.manual_seed(0)
    pids = tmp_path / "pids.txt"
    compute = partial(_embed_with, torch.nn.Linear(1, 3), pids)
    kw = dict(params={"p": 1}, code="c", desc="g")
    items = _grouped_items(tmp_path / "in", ["b", "a", "c"])
    build_grouped_file(tmp_path / "local.h5", items, compute, **kw)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        dask = dict(executor="dask", scheduler=cluster.scheduler_address)
        pids.unlink()
        status = build_grouped_file(tmp_path / "dask.h5", items, compute, **kw, **dask)
        assert str(os.getpid()) not in pids.read_text().split()  # computed by the workers
        assert status == {"a": "done", "b": "done", "c": "done"}
        assert (tmp_path / "dask.h5").read_bytes() == (tmp_path / "local.h5").read_bytes()
        more = items + _grouped_items(tmp_path / "in2", ["d"])
        status = build_grouped_file(tmp_path / "dask.h5", more, compute, **kw, **dask)
    assert status == {"a": "reused", "b": "reused", "c": "reused", "d": "done"}
    assert len(pids.read_text().split()) == 3 + 1  # the rerun computed the new video only
    build_grouped_file(tmp_path / "local.h5", more, compute, **kw)
    assert (tmp_path / "dask.h5").read_bytes() == (tmp_path / "local.h5").read_bytes()
    assert h5.read_group(tmp_path / "dask.h5", "d", ["x"])["x"].shape == (4, 3)


def test_grouped_file_computes_runs_of_videos_in_one_call(tmp_path):
    """``compute_batch`` gets the videos to do in runs of ``batch_items`` (sorted, reused
    groups left out) and the file is byte-identical to the one-call-per-video file."""
    import torch

    from pipeline.io.per_video import build_grouped_file

    torch.manual_seed(0)
    net = torch.nn.Linear(1, 3)
    calls = []

    def compute_batch(run):
        calls.append([vid for vid, _ in run])
        return [_embed_with(net, tmp_path / "pids.txt", vid, src) for vid, src in run]

    kw = dict(params={"p": 1}, code="c", desc="g")
    items = _grouped_items(tmp_path / "in", ["e", "b", "a", "d", "c"])
    build_grouped_file(tmp_path / "one.h5", items, partial(_embed_with, net, tmp_path / "p"), **kw)
    batched = dict(compute_batch=compute_batch, batch_items=2)
    build_grouped_file(tmp_path / "runs.h5", items[:3], lambda v, s: 1 / 0, **kw, **batched)
    assert calls == [["a", "b"], ["e"]]
    status = build_grouped_file(tmp_path / "runs.h5", items, lambda v, s: 1 / 0, **kw, **batched)
    assert calls[2:] == [["c", "d"]]  # a, b and e reused
    assert status == {"a": "reused", "b": "reused", "c": "done", "d": "done", "e": "reused"}
    assert (tmp_path / "runs.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()


def test_grouped_file_hashes_a_shared_input_once(tmp_path, monkeypatch):
    """Audio-less rows all key on the manifest: 32,298 FER-2013 rows hashed it 32,298 times."""
    import pipeline.io.per_video as pv

    shared = tmp_path / "manifest.csv"
    shared.write_text("video_id\n" + "".join(f"v{i}\n" for i in range(5)))
    hashed = []
    real = pv.sha256_file
    monkeypatch.setattr(pv, "sha256_file", lambda p: hashed.append(p) or real(p))

    def compute(vid, src):
        return {"x": np.zeros((0, 2), np.float32)}, {"skipped": "no audio track"}

    items = [(f"v{i}", shared) for i in range(5)]
    pv.build_grouped_file(tmp_path / "g.h5", items, compute, params={}, code="c", desc="g")
    assert hashed == [shared]
    assert [vid for vid, _ in h5.iter_groups(tmp_path / "g.h5")] == [v for v, _ in items]
