"""Benchmark: peak memory of the face stage on long 1080p videos, streamed vs all-in-memory.

Builds 1080p videos of ``--seconds`` (default 30 and 120 s) from a real CREMA-D clip
(upscaled, letterboxed, looped: ../shared/tools/make_long_video.py, 25 fps), then runs the
face track of each in a fresh process, twice:

* ``streamed``: :func:`pipeline.video.faces.detect_faces_job`, the stage's worker (a detector
  batch of decoded frames at a time, appended to the video's HDF5 file);
* ``in_memory``: the former worker, kept here only for this comparison: every sampled RGB frame
  stays in a list until the video ends, then the whole track is written at once.

Both use dlib (HOG, no upsampling: the face is about 300 px high), 5 fps sampling, 112 px
similarity-aligned crops. Reported per run: wall seconds, peak RSS of the process
(``resource.getrusage``, MB), sampled frames. Then the HDF5 filter of the face crops: bytes per
frame and read speed of the streamed file rewritten with no filter, lzf and gzip (level 4).

    python -m tests.benchmarks.bench_face_memory --out reports/benchmarks/face_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
TOOL = ROOT.parent / "shared" / "tools" / "make_long_video.py"


def _config():
    from pipeline.video.faces import FaceConfig

    return FaceConfig(
        detector="dlib",
        fps=5.0,
        min_face_px=40,
        dlib_landmarks=5,
        dlib_upsample=0,
        align="similarity",
        crop_margin=0.2,
        size_px=112,
        track="nearest",
        fill="zeros",
        batch_size=1,
        device="cpu",
        images="aligned",
    )


def _in_memory(video: Path, out: Path) -> int:
    """The former worker: all sampled frames in memory, then one write."""
    from pipeline.io.h5 import write_h5
    from pipeline.video.detectors import get_detector
    from pipeline.video.faces import _align_batch, sample_frames
    from pipeline.video.track import MainFaceTracker

    cfg = _config()
    det = get_detector(cfg.detector, cfg.min_face_px, cfg.dlib_landmarks, cfg.dlib_upsample)
    frames = list(sample_frames(video, cfg.fps, 25.0))  # every sampled full-resolution frame
    dets = [det.detect([rgb])[0] for _, _, rgb in frames]
    arrays = _align_batch(frames, dets, MainFaceTracker(cfg.track), cfg, {"last": None})
    write_h5(out, {"v": arrays}, stage="detect_faces")
    return len(frames)


def _streamed(video: Path, out: Path) -> int:
    from pipeline.io.h5 import read_attrs
    from pipeline.io.per_video import VideoJob
    from pipeline.video.faces import detect_faces_job

    detect_faces_job(VideoJob("v", (video,), out, {"fps": 25.0}), "bench", _config())
    return read_attrs(out)["report"]["frames"]


def child(mode: str, video: Path, out: Path) -> None:
    """Run one mode in this (fresh) process and print its figures as JSON."""
    t = time.perf_counter()
    frames = (_streamed if mode == "streamed" else _in_memory)(video, out)
    seconds = time.perf_counter() - t
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(
        json.dumps({"seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb), "frames": frames})
    )


def _run_child(mode: str, video: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "tests.benchmarks.bench_face_memory", "--child", mode]
    res = subprocess.run(
        cmd + [str(video), str(out)], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def compression(faces_file: Path, work: Path) -> dict:
    """Bytes per frame and read speed of the face crops under each HDF5 filter."""
    with h5py.File(faces_file, "r") as f:
        faces = f["v/faces"][()]
    res = {}
    for name, kw in {
        "none": {},
        "lzf": {"compression": "lzf"},
        "gzip4": {"compression": "gzip", "compression_opts": 4},
    }.items():
        path = work / f"faces_{name}.h5"
        t = time.perf_counter()
        with h5py.File(path, "w") as f:
            f.create_dataset("faces", data=faces, chunks=(27, 112, 112, 3), **kw)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        with h5py.File(path, "r") as f:
            f["faces"][()]
        read_s = time.perf_counter() - t
        res[name] = {
            "bytes_per_frame": round(path.stat().st_size / len(faces)),
            "write_frames_per_s": round(len(faces) / write_s),
            "read_frames_per_s": round(len(faces) / read_s),
        }
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/face_memory.json"))
    p.add_argument("--seconds", type=int, nargs="+", default=[30, 120])
    p.add_argument("--child", nargs=3, metavar=("MODE", "VIDEO", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    clip = SHARED / "crema-d-sample" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
    if not clip.exists() or not TOOL.exists():
        sys.exit(f"needs {clip} and {TOOL} (../shared)")
    result = {"detector": "dlib, upsample 0", "sampling_fps": 5.0, "size_px": 112, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for secs in args.seconds:
            video = work / f"long_{secs}s.mp4"
            subprocess.run(
                [sys.executable, str(TOOL), str(clip), str(secs), str(video)], check=True
            )
            row = {"video_seconds": secs, "resolution": "1920x1080"}
            for mode in ("streamed", "in_memory"):
                row[mode] = _run_child(mode, video, work / f"{mode}_{secs}.h5")
                print(secs, mode, row[mode], flush=True)
            result["runs"].append(row)
        result["hdf5_filters"] = compression(work / f"streamed_{args.seconds[-1]}.h5", work)
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
