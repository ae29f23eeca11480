"""Benchmark: one long 720p video through the per-video stages, wall time and peak RSS per stage.

Builds an 18-minute (``--minutes``) 1280x720 25 fps video with speech and music under it: the
six real CREMA-D clips of ../shared/data played one after the other and looped (upscaled and
letterboxed like ../shared/tools/make_long_video.py), their audio looped alongside with the
demo's synthetic music at 10 dB speech-to-music ratio. Two 20 s videos of the same material are
the train and dev split (``build_manifest`` needs both); the long one is the test split. All
three are laid out as Aff-Wild2 (``videos/`` and per-frame ``EXPR_Set`` label files), and each
stage runs as ``dvc repro`` would run it (``python -m stages.<name>``, the commands of
dvc.yaml) in a fresh process in a scratch project, with this checkout's params.yaml except
``build_manifest`` (the scratch layout) and ``base.n_jobs: 1`` (one process, so that the peak
RSS measured, ``os.wait4`` of the stage process, is the whole stage's; torch and TensorFlow
still use every core). The stages: faces, audio, vocals, 5 Hz labels, embeddings (every
``embed_faces``/``embed_audio`` backbone of params.yaml) and window statistics (every
``window_stats`` feature whose embedding was made). Per stage: wall seconds, peak RSS (MB),
and the seconds per hour of video, with the short videos' share included (about 4 % of the
frames). Needs the models of ``make demo`` (models/pretrained).

    python -m tests.benchmarks.bench_long_video --out reports/benchmarks/long_video.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from tests.benchmarks.media import FPS, make_720p

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHORT_S = 20
SPLITS = {"long": "Test_Set", "train": "Train_Set", "dev": "Validation_Set"}


def build_dataset(root: Path, minutes: float, classes: list[str]) -> dict[str, float]:
    """Write the three videos and their per-frame label files; seconds of each video."""
    from pipeline.data.demo import CREMA_CLASSES

    clips = sorted((SHARED / "crema-d-sample" / "VideoFlash").glob("*.flv"))
    if len(clips) != 6:
        raise SystemExit(f"{SHARED / 'crema-d-sample'}: the six CREMA-D clips are needed")
    label_of_clip = np.array([classes.index(CREMA_CLASSES[c.stem.split("_")[2]]) for c in clips])
    (root / "videos").mkdir(parents=True)
    lengths = {"long": round(minutes * 60), "train": SHORT_S, "dev": SHORT_S}
    for seed, (name, seconds) in enumerate(lengths.items()):
        order = clips[seed:] + clips[:seed]  # a different first clip per video
        t = time.perf_counter()
        owner = make_720p(
            order, seconds, root / "videos" / f"{name}.mp4", music_snr_db=10, seed=seed
        )
        labels = label_of_clip[(owner + seed) % len(clips)]
        ann = root / "annotations" / "EXPR_Set" / SPLITS[name]
        ann.mkdir(parents=True, exist_ok=True)
        (ann / f"{name}.txt").write_text(
            ",".join(classes) + "\n" + "\n".join(map(str, labels)) + "\n"
        )
        print(f"built {name}.mp4 ({seconds} s) in {time.perf_counter() - t:.0f} s", flush=True)
    return {k: float(v) for k, v in lengths.items()}


def stage_commands(params: dict) -> list[tuple[str, list[str]]]:
    """The per-video stages and window statistics, as dvc.yaml runs them (scratch paths)."""
    m = ["--manifest", "data/interim/manifest.csv"]
    cmds = [
        (
            "build_manifest",
            ["--src", "data/raw/long", "--dst", "data/interim/manifest.csv"]
            + ["--report", "data/interim/manifest_report.json", "--images", "data/interim/images"],
        ),
        ("detect_faces", m + ["--dst", "data/interim/faces", "--report", "faces_report.json"]),
        ("extract_audio", m + ["--dst", "data/interim/audio", "--report", "audio_report.json"]),
        (
            "separate_vocals",
            m
            + ["--audio", "data/interim/audio", "--model", "models/pretrained/spleeter/2stems"]
            + ["--dst", "data/interim/vocals", "--report", "vocals_report.json"],
        ),
        ("resample_labels", m + ["--dst", "data/interim/labels_5hz.h5"]),
    ]
    made = set()
    for key in params["embed_faces"]["backbones"]:
        made.add(f"faces/{key}")
        cmds.append(
            (
                f"embed_faces@{key}",
                ["--backbone", key]
                + m
                + ["--faces", "data/interim/faces"]
                + ["--pretrained", "models/pretrained", "--dst", f"features/faces/{key}.h5"],
            )
        )
    source = params["embed_audio"]["source"]
    for key in params["embed_audio"]["backbones"]:
        made.add(f"audio/{key}")
        cmds.append(
            (
                f"embed_audio@{key}",
                ["--backbone", key]
                + m
                + ["--audio", f"data/interim/{source}"]
                + ["--pretrained", "models/pretrained", "--dst", f"features/audio/{key}.h5"],
            )
        )
    for key, item in params["window_stats"]["features"].items():
        if item in made:  # faces/finetuned needs a trained model: not a per-video cost
            cmds.append(
                (
                    f"window_stats@{key}",
                    ["--embeddings", f"features/{item}.h5"]
                    + ["--labels", "data/interim/labels_5hz.h5"]
                    + ["--dst", f"features/windows/{key}.h5"],
                )
            )
    return cmds


def run_stage(name: str, args: list[str], cwd: Path, log: Path) -> dict:
    """Run one stage in a fresh process; its wall seconds and peak RSS (``os.wait4``)."""
    module = "stages." + name.split("@")[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    t = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n### {name}\n")
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--params", "params.yaml"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{tail}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--pretrained", type=Path, default=ROOT / "models" / "pretrained")
    p.add_argument("--minutes", type=float, default=18.0)
    p.add_argument("--detector", default=None, help="detect_faces.detector (default: params)")
    p.add_argument("--batch-size", type=int, default=None, help="detect_faces.batch_size")
    p.add_argument("--keep", type=Path, default=None, help="keep the scratch project here")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "long_video.json")
    args = p.parse_args()
    if not (args.pretrained / "spleeter").is_dir():
        raise SystemExit(f"{args.pretrained}: no pretrained models; run `make demo` first")

    params = yaml.safe_load(args.params.read_text())
    params["base"]["n_jobs"] = 1
    params["build_manifest"].update(adapter="affwild2", root="data/raw/long")
    for key, value in (("detector", args.detector), ("batch_size", args.batch_size)):
        if value is not None:
            params["detect_faces"][key] = value
    tmp = tempfile.TemporaryDirectory()
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "models").mkdir(exist_ok=True)
    (work / "models" / "pretrained").symlink_to(args.pretrained.resolve())
    # built in a fresh process: a child's peak RSS counts the memory of the parent it was forked
    # from (Linux keeps the pre-exec high-water mark), so this process stays small
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds = pool.apply(
            build_dataset,
            (work / "data" / "raw" / "long", args.minutes, params["base"]["classes"]),
        )
    total_s = sum(seconds.values())

    load_before = os.getloadavg()
    stages = {}
    log = work / "stages.log"
    for name, stage_args in stage_commands(params):
        r = run_stage(name, stage_args, work, log)
        r["s_per_hour_of_video"] = round(r["wall_s"] / total_s * 3600)
        stages[name] = r
        print(f"{name:24s} {r['wall_s']:8.1f} s  peak RSS {r['peak_rss_mb']:6d} MB", flush=True)
    wall = sum(r["wall_s"] for r in stages.values())
    faces = json.loads((work / "faces_report.json").read_text())
    result = {
        "what": "per-video stages (python -m stages.X, dvc.yaml's commands, base.n_jobs 1) on a "
        f"{args.minutes:g}-minute 1280x720 {FPS} fps video with speech and music (looped real "
        f"CREMA-D clips) plus two {SHORT_S} s videos as train/dev",
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "video_s": seconds,
        "detect_faces": {
            k: params["detect_faces"][k] for k in ("detector", "batch_size", "fps", "min_face_px")
        },
        "faces_report": faces,
        "embed_faces": sorted(params["embed_faces"]["backbones"]),
        "embed_audio": sorted(params["embed_audio"]["backbones"]),
        "stages": stages,
        "total_wall_s": round(wall, 1),
        "total_s_per_hour_of_video": round(wall / total_s * 3600),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in stages.values()),
    }
    print(
        f"total {wall / 60:.1f} min for {total_s / 60:.1f} min of video "
        f"({result['total_s_per_hour_of_video'] / 3600:.2f} h per hour of video); "
        f"largest peak RSS {result['max_peak_rss_mb']} MB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
