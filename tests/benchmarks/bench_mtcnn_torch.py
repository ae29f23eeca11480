"""Benchmark: the torch port of MTCNN (``detector: mtcnn_torch``) against the ``mtcnn`` package.

On every frame of the six real CREMA-D clips (480 x 360), in one run, side by side:
- the package one frame per call, detector loaded once (the per-frame baseline and the
  reference boxes), and ``MTCNN().detect_faces(frame)`` with a new detector per frame
  (the naive scripts' way, timed on a subset);
- the package in batches of 8 frames (its batch mode);
- the torch port at batch 1, 8 and 32, with one torch thread and with torch's default (one
  per core), and at batch 8 in 2 processes of one thread over the clips (as the stage runs
  with ``base.n_jobs: 2``; decoding and loading the detector in each worker included).
Each is compared with the reference: main-face box IoU >= 0.9 on frames where either finds
a face, found rate, largest landmark distance and score difference, and frames with exactly
the same boxes and landmarks. The machine may be shared: the load average is recorded, and
the speed-ups (ratios of frames/s measured in the same run) are the figures to compare across
runs. CPU seconds of the process are recorded too (TensorFlow uses both cores in one process).
Then the same parity on the embedded demo (``--demo``, default data/raw/demo from `make demo`):
every ``--demo-every``-th frame (5 = about the 5 fps the stage samples) of every demo video, the
package one frame per call against the torch port at batch 8 (the default ``detect_faces``
setting), with the frames/s of both.

    python -m tests.benchmarks.bench_mtcnn_torch --out reports/benchmarks/mtcnn_torch.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _timed(fn) -> tuple[object, dict]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu}


def _in_batches(det, frames: list[np.ndarray], batch: int) -> list[list]:
    return [d for i in range(0, len(frames), batch) for d in det.detect(frames[i : i + batch])]


def _video_in_worker(path: str, batch: int, every: int) -> list[list]:
    """One clip, decoded and detected in a worker process with one torch thread."""
    import torch

    from pipeline.data.media import iter_video_frames
    from pipeline.video.detectors import get_detector

    torch.set_num_threads(1)
    frames = [rgb for _, _, rgb in iter_video_frames(path, every=every)]
    return _in_batches(get_detector("mtcnn_torch", 20, device="cpu"), frames, batch)


def _agreement(ref: list[list], got: list[list]) -> dict:
    """The parity figures of ``got`` against the reference detections ``ref``."""
    from pipeline.video.detectors import box_iou

    def main(dets):
        return max(dets, key=lambda d: d.score) if dets else None

    ious, marks, scores = [], [], []
    for r, g in zip(ref, got):
        mr, mg = main(r), main(g)
        if mr is None and mg is None:
            continue
        iou = float(box_iou(mr.box, mg.box)[0, 0]) if mr is not None and mg is not None else 0.0
        ious.append(iou)
        if iou >= 0.9:
            marks.append(float(np.abs(mr.landmarks - mg.landmarks).max()))
            scores.append(abs(mr.score - mg.score))
    same = [
        len(r) == len(g)
        and all(
            np.array_equal(a.box, b.box) and np.array_equal(a.landmarks, b.landmarks)
            for a, b in zip(r, g)
        )
        for r, g in zip(ref, got)
    ]
    return {
        "iou_ge_0.9": float(np.mean(np.array(ious) >= 0.9)),
        "iou_min": float(min(ious)),
        "found_rate": float(np.mean([bool(g) for g in got])),
        "landmarks_max_px": max(marks, default=0.0),
        "score_max_diff": max(scores, default=0.0),
        "exact": float(np.mean(same)),
    }


def demo_parity(demo: Path, every: int) -> dict:
    """Parity and frames/s of the torch port (batch 8) against the package on the demo videos."""
    from pipeline.data.media import iter_video_frames
    from pipeline.video.detectors import MTCNNDetector, MTCNNTorchDetector

    videos = sorted((demo / "videos").glob("*.mp4"))
    if not videos:
        raise SystemExit(f"{demo}: no demo videos; run `make demo` first or pass --demo ''")
    frames = [rgb for v in videos for _, _, rgb in iter_video_frames(v, every=every)]
    package = MTCNNDetector(min_face_px=20)
    port = MTCNNTorchDetector(min_face_px=20, device="cpu")
    package.detect(frames[:1])
    port.detect(frames[:8])
    ref, package_t = _timed(lambda: _in_batches(package, frames, 1))
    got, port_t = _timed(lambda: _in_batches(port, frames, 8))
    return {
        "videos": len(videos),
        "every_nth_frame": every,
        "frames": len(frames),
        "frame_size": list(frames[0].shape[:2]),
        "package_per_frame_frames_per_s": len(frames) / package_t["seconds"],
        "torch_batch8_frames_per_s": len(frames) / port_t["seconds"],
        "reference_found_rate": float(np.mean([bool(r) for r in ref])),
        "torch_batch8_parity_vs_package_per_frame": _agreement(ref, got),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/mtcnn_torch.json"))
    p.add_argument(
        "--naive-frames", type=int, default=60, help="frames timed for the new-detector baseline"
    )
    p.add_argument("--every", type=int, default=1, help="use every n-th frame (smoke runs)")
    p.add_argument("--demo", default=str(ROOT / "data" / "raw" / "demo"), help="'' = skip")
    p.add_argument("--demo-every", type=int, default=5, help="demo: every n-th frame")
    args = p.parse_args()

    import torch
    from mtcnn import MTCNN

    from pipeline.data.media import iter_video_frames
    from pipeline.video.detectors import MTCNNDetector, MTCNNTorchDetector

    videos = sorted((SHARED / "crema-d-sample" / "VideoFlash").glob("*.flv"))
    if not videos:
        raise SystemExit(f"no CREMA-D clips under {SHARED}")
    per_video = [[rgb for _, _, rgb in iter_video_frames(v, every=args.every)] for v in videos]
    frames = [f for fr in per_video for f in fr]
    n = len(frames)
    load = {"start": os.getloadavg()}
    res: dict[str, dict] = {}
    dets: dict[str, list[list]] = {}

    naive = MTCNN()
    naive.detect_faces(frames[0])
    _, res["package_new_detector_per_frame"] = _timed(
        lambda: [MTCNN().detect_faces(f) for f in frames[: args.naive_frames]]
    )
    res["package_new_detector_per_frame"]["frames"] = args.naive_frames

    package = MTCNNDetector(min_face_px=20)
    package.detect(frames[:1])
    dets["package_per_frame"], res["package_per_frame"] = _timed(
        lambda: _in_batches(package, frames, 1)
    )
    dets["package_batch8"], res["package_batch8"] = _timed(lambda: _in_batches(package, frames, 8))

    port = MTCNNTorchDetector(min_face_px=20, device="cpu")
    default_threads = torch.get_num_threads()
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        port.detect(frames[:8])
        for batch in (1, 8, 32):
            key = f"torch_batch{batch}_{threads}thread{'s' * (threads > 1)}"
            dets[key], res[key] = _timed(lambda: _in_batches(port, frames, batch))
    torch.set_num_threads(default_threads)
    key = "torch_batch8_2processes"
    out, res[key] = _timed(
        lambda: Parallel(n_jobs=2)(
            delayed(_video_in_worker)(str(v), 8, args.every) for v in videos
        )
    )
    dets[key] = [d for video in out for d in video]
    res[key]["note"] = "1 torch thread per process; decoding and detector loading included"
    res[key]["cpu_seconds"] = None  # the workers' CPU time is not this process's
    torch.set_num_threads(1)
    demo = demo_parity(Path(args.demo), args.demo_every) if args.demo else None
    torch.set_num_threads(default_threads)
    load["end"] = os.getloadavg()

    for r in res.values():
        r.setdefault("frames", n)
        r["frames_per_s"] = r["frames"] / r["seconds"]
    for name, r in res.items():
        r["speedup_vs_package_per_frame"] = (
            r["frames_per_s"] / res["package_per_frame"]["frames_per_s"]
        )
        cpu = r["cpu_seconds"]
        r["cpu_ms_per_frame"] = None if cpu is None else 1000 * cpu / r["frames"]
        if name in dets:
            r["parity_vs_package_per_frame"] = _agreement(dets["package_per_frame"], dets[name])
    naive_fps = res["package_new_detector_per_frame"]["frames_per_s"]
    summary = {
        "machine": f"{os.cpu_count()} CPU cores",
        "load_average_1_5_15_min": load,
        "torch_default_threads": default_threads,
        "frames": n,
        "frame_size": list(frames[0].shape[:2]),
        "results": res,
        "demo_parity": demo,
        "speedup_vs_package_new_detector_per_frame": {
            k: v["frames_per_s"] / naive_fps for k, v in res.items()
        },
    }
    print(f"{'method':34s} {'frames/s':>9s} {'x per-frame':>11s} {'cpu ms/f':>9s}  parity")
    for k, v in res.items():
        par = v.get("parity_vs_package_per_frame", {})
        print(
            f"{k:34s} {v['frames_per_s']:9.1f} {v['speedup_vs_package_per_frame']:11.1f} "
            f"{v['cpu_ms_per_frame'] or float('nan'):9.1f}  "
            + (
                f"IoU>=0.9 {100 * par['iou_ge_0.9']:.1f} %, exact {100 * par['exact']:.1f} %, "
                f"landmarks <= {par['landmarks_max_px']:.0f} px, found {par['found_rate']:.3f}"
                if par
                else ""
            )
        )
    if demo:
        par = demo["torch_batch8_parity_vs_package_per_frame"]
        print(
            f"demo ({demo['frames']} frames): package "
            f"{demo['package_per_frame_frames_per_s']:.1f} frames/s, torch batch 8 "
            f"{demo['torch_batch8_frames_per_s']:.1f} frames/s; "
            f"IoU>=0.9 {100 * par['iou_ge_0.9']:.1f} %, exact {100 * par['exact']:.1f} %, found "
            f"{par['found_rate']:.3f} vs {demo['reference_found_rate']:.3f}"
        )
    print(f"load average {load}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
