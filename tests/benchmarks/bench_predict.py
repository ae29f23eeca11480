"""Benchmark: seconds per minute of 720p video for `python -m pipeline.predict`.

Builds 720p videos of ``--seconds`` (default 60 and 120 s) from a real CREMA-D clip the way
../shared/tools/make_long_video.py builds its 1080p one (upscaled, letterboxed, looped, 25 fps,
x264 ultrafast), with the clip's audio looped alongside (AAC mono, 44.1 kHz), so every
modality runs. Each video is then predicted in a fresh process with a trained model set
(default: this checkout's params.yaml and models/ from `make demo`). Reported per video: wall
seconds of the whole process (imports and model loading included), seconds per minute of
video, peak RSS of the process (``resource.getrusage``, MB; memory should not grow with the
length of the video), and the seconds of each step from predict's JSON. With two lengths, the
marginal cost (the difference of the wall times per minute of the difference of the lengths)
separates the fixed cost of a run (imports, loading TensorFlow, torch and the models) from the
cost that grows with the video. Both default lengths exceed one Spleeter chunk (30 s), so the
peak RSS of the two runs compares like with like. Then the clip's audio alone, looped to
``--audio-seconds`` (default 60 and 480 s, WAV), shows the memory of the audio path on long
inputs in seconds rather than minutes (no face track to wait for).

    python -m tests.benchmarks.bench_predict --out reports/benchmarks/predict.json
    python -m tests.benchmarks.bench_predict --params ../demo/params.yaml --models ../demo/models
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.benchmarks.media import AUDIO_RATE, make_720p

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLIP = SHARED / "crema-d-sample" / "VideoFlash" / "1001_DFA_HAP_XX.flv"


# predict in a fresh process that prints its own peak RSS (kB) when done
_CHILD = (
    "import resource, runpy, sys; sys.argv[0] = 'pipeline.predict'; "
    "runpy.run_module('pipeline.predict', run_name='__main__'); "
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def run_predict(video: Path, params: Path, models: Path, out: Path) -> dict:
    """Predict ``video`` in a fresh process; wall seconds, peak RSS, and the JSON summary."""
    cmd = [sys.executable, "-c", _CHILD, str(video), "--out", str(out)]
    t = time.perf_counter()
    res = subprocess.run(
        cmd + ["--params", str(params), "--models", str(models)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"predict failed:\n{res.stderr[-3000:]}")
    peak_kb = int(res.stdout.split("MAXRSS_KB")[-1].split()[0])
    summary = json.loads((out / f"{video.stem}.json").read_text())
    return {"wall_s": wall, "peak_rss_mb": round(peak_kb / 1024), **summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--seconds", type=int, nargs="+", default=[60, 120])
    p.add_argument("--audio-seconds", type=int, nargs="*", default=[60, 480])
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "predict.json")
    args = p.parse_args()
    from pipeline.data.media import read_audio

    if not args.clip.is_file():
        raise SystemExit(f"{args.clip}: CREMA-D clip not found (set AVEMO_SHARED_DATA)")
    runs = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in sorted(args.seconds):
            video = Path(tmp) / f"crema_720p_{seconds}s.mp4"
            t = time.perf_counter()
            make_720p(args.clip, seconds, video)
            print(f"built {video.name} in {time.perf_counter() - t:.1f} s", flush=True)
            r = run_predict(video, args.params, args.models, Path(tmp) / "out")
            run = {
                "video_s": seconds,
                "wall_s": round(r["wall_s"], 1),
                "s_per_min_of_video": round(r["wall_s"] / seconds * 60, 1),
                "steps_s": r["seconds"],
                "peak_rss_mb": r["peak_rss_mb"],
                "frames": r["n_frames"],
                "models_used": len(r["models_used"]),
                "fusion": r["fusion"]["method"],
                "dominant_emotion": r["dominant_emotion"] if "dominant_emotion" in r else None,
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
        audio_runs = []
        wave, _ = read_audio(args.clip, AUDIO_RATE)
        for seconds in sorted(args.audio_seconds):
            wav = Path(tmp) / f"crema_audio_{seconds}s.wav"
            sf.write(wav, np.resize(wave, seconds * AUDIO_RATE), AUDIO_RATE)
            r = run_predict(wav, args.params, args.models, Path(tmp) / "out")
            run = {
                "audio_s": seconds,
                "wall_s": round(r["wall_s"], 1),
                "steps_s": r["seconds"],
                "peak_rss_mb": r["peak_rss_mb"],
            }
            audio_runs.append(run)
            print(json.dumps(run), flush=True)
    marginal = None
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        marginal = round((b["wall_s"] - a["wall_s"]) / (b["video_s"] - a["video_s"]) * 60, 1)
    result = {
        "what": "python -m pipeline.predict on a 1280x720 25 fps video (CREMA-D clip upscaled, "
        "letterboxed and looped, with its audio), one fresh process per video",
        "clip": args.clip.name,
        "params": os.path.relpath(args.params, ROOT),
        "models": os.path.relpath(args.models, ROOT),
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "marginal_s_per_min_of_video": marginal,
        "audio_only_runs": audio_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
