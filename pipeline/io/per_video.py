"""Run one job per video in parallel, reusing outputs that are still fresh.

Stages whose work is per video (faces, audio, vocals, embeddings) keep one HDF5 file per
video in an output folder that DVC declares with ``persist: true``. A file is reused only if
its ``params_digest`` attribute equals the job's digest, which covers the stage params, the
content of the job's input files and the source code of the modules that made it. Adding
one video to a dataset therefore costs one video of work, and a code or params change
recomputes everything. Files of videos no longer in the manifest are removed.

Per-video failures are collected, written to the stage report, and raised together at the
end, so DVC never caches a partial run.

The stage report does not depend on what was reused: a worker stores its report entry (found
rate, seconds, ...) in the output file's ``report`` attribute, and the entry is read back from
the file for computed and reused videos alike. A resumed or incremental run therefore writes
the same report, byte for byte, as a clean run; only the log tells which videos were reused.

``AVEMO_RECOMPUTE=1`` in the environment ignores every reusable file and group, so
``AVEMO_RECOMPUTE=1 dvc repro -f -s detect_faces`` really recomputes (``-f`` alone re-runs the
stage, which then reuses every fresh video).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
from joblib import Parallel, delayed
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.fetch import sha256_file
from pipeline.imports import PACKAGE_ROOT, pipeline_files
from pipeline.io.atomic import write_json
from pipeline.io.h5 import decode_attr, is_fresh, open_writer, params_digest, read_attrs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    """One video's work: its inputs (whose content keys the cache) and its output file."""

    video_id: str
    inputs: tuple[Path, ...]
    out: Path
    # anything the worker needs (fps, ...); a non-empty info["skip"] is why the video has
    # no output (e.g. "no audio track (modality image)"): the runner skips it, no worker runs
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What happened to one video: ``status`` is done, reused, skipped or failed.

    ``detail`` is the report entry: for done and reused videos, the ``report`` attribute the
    worker stored in its output file.
    """

    status: str
    detail: dict[str, Any] = field(default_factory=dict)


def code_digest(modules: Sequence[ModuleType]) -> str:
    """Digest of the source of ``modules`` and of every pipeline module they import,
    transitively (:func:`pipeline.imports.pipeline_files`), so that a change to any code a
    worker runs invalidates its reused files."""
    h = hashlib.sha256()
    for file in pipeline_files([Path(inspect.getfile(m)) for m in modules]):
        h.update(file.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return h.hexdigest()[:16]


def runtime(packages: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    """What computed an output besides code and params: the device and package versions.

    It enters the per-video digests and the outputs' ``runtime`` attribute, so outputs made
    on a GPU are never reused as if made on a CPU (or with another library version).

    Parameters
    ----------
    packages : distribution names whose code computes the output (e.g. ``torch``, ``mtcnn``)
    device : ``cpu`` or ``cuda`` (the GPU's name is added)
    """
    import importlib.metadata

    name = device
    if device == "cuda":
        import torch

        name = f"cuda ({torch.cuda.get_device_name(0)})"
    return {
        "device": name,
        "versions": {p: importlib.metadata.version(p) for p in sorted(packages)},
    }


def job_digest(job: VideoJob, params: dict[str, Any], code: str) -> str:
    """Digest of a job: params, input file contents, code version."""
    return params_digest(
        {"params": params, "code": code, "inputs": [sha256_file(p) for p in job.inputs]}
    )


def recompute_requested() -> bool:
    """True when ``AVEMO_RECOMPUTE`` is set to a true value (1, true, yes)."""
    return os.environ.get("AVEMO_RECOMPUTE", "").strip().lower() in {"1", "true", "yes"}


def stored_report(path: Path) -> dict[str, Any]:
    """The report entry a worker stored in its output file (``report`` attribute)."""
    entry = read_attrs(path).get("report", {})
    return entry if isinstance(entry, dict) else {}


def one_blas_thread():
    """Context: numpy's BLAS on one thread.

    BLAS splits a matrix product's sums by thread, so librosa's mel projection gave values
    ~1e-7 apart on 1 and 2 threads (and GE2E states ~3e-6 apart downstream). Per-video work
    runs with one BLAS thread wherever it runs (in this process, a joblib worker or a dask
    worker), so its outputs are the same bytes whatever the cores, ``n_jobs`` or executor.
    Videos run in parallel instead; torch and TensorFlow keep their own threads.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _run_one(work: Callable[[VideoJob, str], None], job: VideoJob, digest: str) -> Outcome:
    if not recompute_requested() and is_fresh(job.out, digest):
        return Outcome("reused", stored_report(job.out))
    if job.out.exists():
        job.out.unlink()
    try:
        with one_blas_thread():
            work(job, digest)
        return Outcome("done", stored_report(job.out))
    except Exception as err:  # noqa: BLE001 -- collected and re-raised for the whole stage
        log.exception("video %s failed", job.video_id)
        return Outcome("failed", {"error": f"{type(err).__name__}: {err}"})


def _run_tagged(
    work: Callable[[VideoJob, str], None], job: VideoJob, digest: str
) -> tuple[str, Outcome]:
    if not logging.getLogger().handlers:  # a worker process: log frame progress like the main one
        from pipeline.cli import setup_logging

        setup_logging()
    return job.video_id, _run_one(work, job, digest)


DASK_CONNECT_TIMEOUT_S = 30


def dask_client(scheduler: str | None):
    """A ``distributed.Client`` of ``scheduler``; one clear error if it is unreachable."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT_S)
    except OSError as err:
        raise PipelineError(
            f"base.dask_scheduler: cannot reach dask scheduler {scheduler!r} ({err})"
        ) from None


def _on_dask(
    work: Callable[[VideoJob, str], None],
    jobs: Sequence[VideoJob],
    digests: Sequence[str],
    scheduler: str | None,
) -> Iterator[tuple[str, Outcome]]:
    """One dask task per video; yields ``(video_id, outcome)`` as tasks finish.

    Paths are made absolute (workers run elsewhere); a task lost with its worker (killed,
    out of memory) is a failed video, like an exception in the worker.
    """
    from distributed import as_completed

    with dask_client(scheduler) as client:
        futures = {}
        for job, digest in zip(jobs, digests):
            job = replace(
                job, inputs=tuple(p.resolve() for p in job.inputs), out=job.out.resolve()
            )
            future = client.submit(
                _run_tagged, work, job, digest, key=f"avemo-{job.video_id}-{digest}"
            )
            futures[future] = job.video_id
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:  # noqa: BLE001 -- the worker died: this video failed
                log.error("video %s failed on the dask cluster: %s", futures[future], err)
                yield futures[future], Outcome("failed", {"error": f"{type(err).__name__}: {err}"})


def run_per_video(
    jobs: Sequence[VideoJob],
    work: Callable[[VideoJob, str], None],
    *,
    out_dir: Path,
    params: dict[str, Any],
    code: str,
    n_jobs: int,
    desc: str,
    runtime: dict[str, Any] | None = None,
    executor: str = "local",
    scheduler: str | None = None,
) -> dict[str, Outcome]:
    """Run ``work(job, digest)`` for every job not already fresh; return outcomes by id.

    ``executor`` ``local`` runs ``n_jobs`` joblib processes on this machine; ``dask`` sends
    one task per video to the dask.distributed scheduler at ``scheduler`` (its workers must
    see the same files at the same absolute paths and have this repository's environment).

    ``work`` must write ``job.out`` atomically with ``params_digest=digest`` and its report
    entry as the ``report`` file attribute (a small JSON-able dict). A job with a reason in
    ``info["skip"]`` is skipped here, without a digest or a worker, so a corpus with no
    audio at all (images) passes the audio stages in seconds, not one task per image.
    ``runtime`` (from :func:`runtime`) enters the digests and reaches the worker as
    ``job.info["runtime"]``, to be stored as the file's ``runtime`` attribute.

    Raises
    ------
    PipelineError
        If any video failed (after all others finished; outcomes are in the error).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = {j.out.name for j in jobs}
    for stale in sorted(out_dir.iterdir()):  # videos no longer listed, leftovers of old runs
        if stale.name not in keep:
            log.info("%s: removing %s (not in the manifest)", desc, stale.name)
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    if runtime is not None:
        params = {**params, "runtime": runtime}
        jobs = [replace(j, info={**j.info, "runtime": runtime}) for j in jobs]
    skipped = [
        (j.video_id, Outcome("skipped", {"reason": j.info["skip"]}))
        for j in jobs
        if j.info.get("skip")
    ]
    for job in jobs:
        if job.info.get("skip"):
            job.out.unlink(missing_ok=True)  # made when the video had the stream
    todo = [j for j in jobs if not j.info.get("skip")]
    digests = [job_digest(j, params, code) for j in todo]
    start = time.perf_counter()
    if not todo:
        results = iter(())
    elif executor == "dask":
        results = _on_dask(work, todo, digests, scheduler)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_run_tagged)(work, j, d) for j, d in zip(todo, digests)
        )
    outcomes: dict[str, Outcome] = {}
    counts = dict.fromkeys(("done", "reused", "skipped", "failed"), 0)
    with tqdm(total=len(jobs), desc=desc, unit="video", mininterval=5) as bar:
        for vid, outcome in itertools.chain(skipped, results):  # finished in any order
            outcomes[vid] = outcome
            counts[outcome.status] += 1
            log.info("%s: %s %s (%d of %d)", desc, vid, outcome.status, len(outcomes), len(jobs))
            bar.set_postfix(counts, refresh=False)
            bar.update()
    outcomes = {j.video_id: outcomes[j.video_id] for j in jobs}  # manifest order
    log.info("%s: %d videos in %.1f s: %s", desc, len(jobs), time.perf_counter() - start, counts)
    failed = {v: o.detail["error"] for v, o in outcomes.items() if o.status == "failed"}
    if failed:
        first = next(iter(failed.items()))
        raise FailedVideos(
            f"{desc}: {len(failed)} of {len(jobs)} videos failed, e.g. {first[0]}: {first[1]}",
            outcomes,
        )
    return outcomes


def _call(fn: Callable, *args: Any) -> Any:
    with one_blas_thread():
        return fn(*args)


def _grouped_on_dask(
    stack: contextlib.ExitStack,
    compute: Callable[[str, Path], Any],
    todo: list[tuple[str, Path]],
    digests: dict[str, str],
    scheduler: str | None,
) -> dict[str, Callable[[], Any]]:
    """Submit one task per video; ``{video_id: result getter}`` (blocks until that one is done).

    ``compute`` is scattered to every worker once (it may hold a model of hundreds of MB)
    instead of being pickled into each task.
    """
    client = stack.enter_context(dask_client(scheduler))
    fn = client.scatter(compute, broadcast=True, hash=False)
    futures = {
        vid: client.submit(_call, fn, vid, src.resolve(), key=f"avemo-{vid}-{digests[vid]}")
        for vid, src in todo
    }

    def getter(vid: str) -> Callable[[], Any]:
        def get():
            future = futures.pop(vid)
            try:
                return future.result()
            finally:
                future.release()

        return get

    return {vid: getter(vid) for vid in futures}


def _batched(
    compute_batch: Callable[[list[tuple[str, Path]]], list[Any]],
    todo: list[tuple[str, Path]],
    size: int,
) -> dict[str, Callable[[], Any]]:
    """``{video_id: result getter}``: ``todo`` cut into runs of ``size``; asking for any video
    of a run computes the whole run with one ``compute_batch`` call (the writer asks in
    order, so one run's results are held at a time)."""
    runs = [todo[i : i + size] for i in range(0, len(todo), max(1, size))]
    run_of = {vid: run for run in runs for vid, _ in run}
    done: dict[str, Any] = {}

    def getter(vid: str) -> Callable[[], Any]:
        def get():
            if vid not in done:
                run = run_of[vid]
                done.update(zip([v for v, _ in run], _call(compute_batch, run), strict=True))
            return done.pop(vid)

        return get

    return {vid: getter(vid) for vid, _ in todo}


class FailedVideos(PipelineError):
    """Some videos failed; ``outcomes`` holds every video's outcome for the report."""

    def __init__(self, message: str, outcomes: dict[str, Outcome]):
        super().__init__(message)
        self.outcomes = outcomes


def report(outcomes: dict[str, Outcome]) -> dict[str, Any]:
    """JSON-ready report: per-video status and details, plus counts.

    A reused video reports as ``done``, with the details stored at the time it was computed,
    so the report is the same whatever was reused.
    """
    status = {v: "done" if o.status == "reused" else o.status for v, o in outcomes.items()}
    return {
        "counts": {
            s: sum(st == s for st in status.values()) for s in ("done", "skipped", "failed")
        },
        "videos": {v: {"status": status[v], **o.detail} for v, o in sorted(outcomes.items())},
    }


def run_and_report(
    jobs: Sequence[VideoJob],
    work: Callable[[VideoJob, str], None],
    *,
    report_path: Path,
    **kw: Any,
) -> dict[str, Outcome]:
    """:func:`run_per_video`, then write the per-video report (also when videos failed)."""
    try:
        outcomes = run_per_video(jobs, work, **kw)
    except FailedVideos as err:
        write_json(report_path, report(err.outcomes))
        raise
    write_json(report_path, report(outcomes))
    return outcomes


def build_grouped_file(
    dst: Path,
    items: Sequence[tuple[str, Path]],
    compute: Callable[[str, Path], tuple[dict[str, Any], dict[str, Any]]],
    *,
    params: dict[str, Any],
    code: str,
    desc: str,
    executor: str = "local",
    scheduler: str | None = None,
    compute_batch: Callable[[list[tuple[str, Path]]], list[tuple[dict, dict]]] | None = None,
    batch_items: int = 1,
    **file_attrs: Any,
) -> dict[str, str]:
    """Write one contract file with a group per video, reusing unchanged groups of the old file.

    ``items`` are ``(video_id, input_file)``; ``compute(video_id, input_file)`` returns
    ``(arrays, group_attrs)``. Each group stores ``input_digest`` (input content, params and
    code); a group of the previous ``dst`` with the same digest is copied instead of
    recomputed, so adding a video costs one video of work. DVC declares ``dst`` with
    ``persist: true`` for this. Returns ``{video_id: 'done' | 'reused'}``.

    ``executor`` ``dask`` computes the videos to do on the dask.distributed cluster at
    ``scheduler``: ``compute`` (with the model it holds) is sent to every worker once, one task
    per video, and this process writes the groups in video order as their results arrive, so
    the file is the same bytes as a local run. A failed video fails the stage (the previous
    file is kept).

    ``compute_batch`` (local executor only) computes runs of up to ``batch_items`` consecutive
    videos to do in one call, returning their results in order: for corpora of many tiny
    items (images), where one call per item is mostly overhead.
    """
    old = None
    if dst.exists():
        try:
            old = h5py.File(dst, "r")
        except OSError:
            log.warning("%s: previous file unreadable, recomputing everything", dst)
    status: dict[str, str] = {}
    start = time.perf_counter()
    # items may share an input (every audio-less row is keyed on the manifest): hash each once
    hashes = {src: sha256_file(src) for src in {src for _, src in items}}
    digests = {
        vid: params_digest({"params": params, "code": code, "input": hashes[src]})
        for vid, src in items
    }

    try:
        reusable = {}  # groups of the old file whose digest still holds
        if old is not None and not recompute_requested():
            for vid, g in ((vid, old.get(vid)) for vid in digests):
                if g is not None and decode_attr(g.attrs.get("input_digest")) == digests[vid]:
                    reusable[vid] = g
        with contextlib.ExitStack() as stack:
            todo = [(vid, src) for vid, src in sorted(items) if vid not in reusable]
            if executor == "dask" and todo:
                results = _grouped_on_dask(stack, compute, todo, digests, scheduler)
            elif compute_batch is not None:
                results = _batched(compute_batch, todo, batch_items)
            else:
                results = {vid: functools.partial(_call, compute, vid, src) for vid, src in todo}
            w = stack.enter_context(
                open_writer(
                    dst,
                    params_digest=params_digest({"params": params, "code": code}),
                    **file_attrs,
                )
            )
            for vid, src in tqdm(sorted(items), desc=desc, unit="video", mininterval=5):
                g = reusable.get(vid)
                if g is not None:
                    arrays = {k: g[k][()] for k in g}
                    attrs = {k: decode_attr(v) for k, v in g.attrs.items()}
                    status[vid] = "reused"
                else:
                    arrays, attrs = results.pop(vid)()
                    attrs = {**attrs, "input_digest": digests[vid]}
                    status[vid] = "done"
                w.add(vid, attrs=attrs, **arrays)
    finally:
        if old is not None:
            old.close()
    counts = {s: sum(v == s for v in status.values()) for s in ("done", "reused")}
    log.info(
        "%s: %d videos in %.1f s %s -> %s",
        desc,
        len(status),
        time.perf_counter() - start,
        counts,
        dst,
    )
    return status
