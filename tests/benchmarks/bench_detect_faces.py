"""Benchmark: face detection frames/s per backend against the naive per-frame MTCNN baseline.

On the six real CREMA-D clips (every frame), in one run:
- naive: ``MTCNN().detect_faces(frame)`` per frame (a new detector each call, as the
  original authors' scripts did), and the same with the detector loaded once;
- this pipeline's MTCNN path (loaded once, batches) with ``min_face_px`` 20 (the naive
  pyramid) and 40 (a 2x smaller image), in one process and across videos with joblib;
- the dlib backend.
It checks that the fast path finds the same faces (box IoU >= 0.9 on >= 99 % of frames).

    python -m tests.benchmarks.bench_detect_faces --out reports/benchmarks/detect_faces.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _largest_box(dets: list[dict]) -> np.ndarray:
    if not dets:
        return np.full(4, np.nan)
    d = max(dets, key=lambda d: d["box"][2] * d["box"][3])
    x, y, w, h = d["box"]
    return np.array([x, y, x + w, y + h], float)


def _track(
    path: str, fps: float, detector: str, min_face_px: int = 20, batch_size: int = 4
) -> np.ndarray:
    from pipeline.params import load_params
    from pipeline.video.faces import face_track

    cfg = replace(
        load_params("detect_faces", ROOT / "params.yaml").face_config(),
        detector=detector,
        fps=None,
        size_px=112,
        min_face_px=min_face_px,
        batch_size=batch_size,
    )
    return face_track(path, fps, cfg)["boxes"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/detect_faces.json"))
    p.add_argument(
        "--naive-frames", type=int, default=120, help="frames timed for the per-call-load baseline"
    )
    args = p.parse_args()

    from mtcnn import MTCNN

    from pipeline.data.media import iter_video_frames, probe
    from pipeline.video.detectors import box_iou, get_detector

    videos = sorted((SHARED / "crema-d-sample" / "VideoFlash").glob("*.flv"))
    if not videos:
        raise SystemExit(f"no CREMA-D clips under {SHARED}")
    frames = {str(v): [rgb for _, _, rgb in iter_video_frames(v)] for v in videos}
    fps = {str(v): probe(v).fps for v in videos}
    n = sum(len(f) for f in frames.values())
    res: dict[str, dict] = {}

    # naive 1: a new MTCNN per frame (timed on a subset; it is slow)
    subset = [f for fr in frames.values() for f in fr][: args.naive_frames]
    t = time.perf_counter()
    for f in subset:
        MTCNN().detect_faces(f)
    res["naive_new_detector_per_frame"] = {
        "frames": len(subset),
        "seconds": time.perf_counter() - t,
    }

    # naive 2: one detector, one frame per call, default settings (the reference boxes)
    net = MTCNN()
    net.detect_faces(subset[0])
    t = time.perf_counter()
    ref = {
        v: np.stack([_largest_box(net.detect_faces(f)) for f in fr]) for v, fr in frames.items()
    }
    res["naive_loaded_once_per_frame"] = {"frames": n, "seconds": time.perf_counter() - t}

    # this pipeline, one process (detector warm): batch sizes (mtcnn's batch mode shifts boxes
    # slightly) and min_face_px 20 (= the naive pyramid) or 40 (a 2x smaller image)
    boxes = {}
    for mf, bs in ((20, 1), (20, 4), (20, 8), (20, 16), (40, 4)):
        get_detector("mtcnn", mf, 68, 0).detect([subset[0]])
        t = time.perf_counter()
        boxes[(mf, bs)] = {v: _track(v, fps[v], "mtcnn", mf, bs) for v in frames}
        res[f"pipeline_mtcnn_min{mf}px_batch{bs}"] = {
            "frames": n,
            "seconds": time.perf_counter() - t,
        }
    t = time.perf_counter()
    Parallel(n_jobs=2)(delayed(_track)(v, fps[v], "mtcnn", 20, 4) for v in frames)
    res["pipeline_mtcnn_min20px_batch4_2_processes"] = {
        "frames": n,
        "seconds": time.perf_counter() - t,
        "note": "includes loading the detector in each worker",
    }
    get_detector("dlib", 40, 68, 0).detect([subset[0]])
    t = time.perf_counter()
    dlib_boxes = {v: _track(v, fps[v], "dlib") for v in frames}
    res["pipeline_dlib_1_process"] = {"frames": n, "seconds": time.perf_counter() - t}
    for r in res.values():
        r["frames_per_s"] = r["frames"] / r["seconds"]

    def ious_of(b):
        return np.concatenate(
            [np.diag(box_iou(np.nan_to_num(ref[v]), np.nan_to_num(b[v]))) for v in frames]
        )

    ious = {f"min{mf}px_batch{bs}": ious_of(b) for (mf, bs), b in boxes.items()}
    ours = boxes[(20, 4)]
    found = {
        "mtcnn": float(np.mean([np.isfinite(ours[v][:, 0]).mean() for v in frames])),
        "dlib": float(np.mean([np.isfinite(dlib_boxes[v][:, 0]).mean() for v in frames])),
    }
    base = res["naive_new_detector_per_frame"]["frames_per_s"]
    summary = {
        "machine": f"{os.cpu_count()} CPU cores",
        "frames": n,
        "results": res,
        "speedup_vs_naive_new_detector": {k: v["frames_per_s"] / base for k, v in res.items()},
        "speedup_vs_naive_loaded_once": {
            k: v["frames_per_s"] / res["naive_loaded_once_per_frame"]["frames_per_s"]
            for k, v in res.items()
        },
        "iou_vs_naive": {
            k: {"min": float(v.min()), "share_ge_0.9": float((v >= 0.9).mean())}
            for k, v in ious.items()
        },
        "found_rate": found,
    }
    print(f"{'method':34s} {'frames':>6s} {'s':>7s} {'frames/s':>9s} {'x naive':>8s}")
    for k, v in res.items():
        print(
            f"{k:34s} {v['frames']:6d} {v['seconds']:7.1f} {v['frames_per_s']:9.1f} "
            f"{summary['speedup_vs_naive_new_detector'][k]:8.1f}"
        )
    for name, iou in ious.items():
        print(
            f"IoU(pipeline MTCNN {name}, naive MTCNN) >= 0.9 on "
            f"{100 * (iou >= 0.9).mean():.1f} % of "
            f"{n} frames (min {iou.min():.3f})"
        )
    print(f"found rate {found}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
