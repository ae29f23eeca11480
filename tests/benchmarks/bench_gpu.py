"""Benchmark: the pipeline's torch work on one device (a GPU, or the CPU with ``--quick``).

One command, a few minutes on a GPU, JSON out. Measured in one run, each after a warm-up:
- face detection (``detect_faces.detector: mtcnn_torch``): frames/s on 1280x720 frames (a real
  CREMA-D clip upscaled and letterboxed, as the long-video benchmark builds them) by batch size;
- face embeddings, faces/s by batch size, on 224x224 crops: the FER-2013 mini-Xception
  (``fer_xception``, grey 64x64 input) and the VGGFace2 ResNet-50 (``vggface2_resnet50``,
  float16 autocast and channels-last on CUDA, as ``embed_faces`` runs it). The layers are
  randomly initialised: the speed of a network does not depend on its weights, and the
  ResNet-50 weights are not shipped;
- training: one epoch of the ``fit`` LSTM (params.yaml's ``fit.lstm`` sizes, seq_len steps of
  window statistics) on an Aff-Wild2-sized set of windows (46,000: 2.8 M frames at 30 fps,
  4 s windows, 50 % overlap), and one epoch of ``finetune_faces`` (mini-Xception with its head,
  CPU augmentation included) per 1,000 faces.
Goals of the scale issue on one modern GPU: >= 1,000 frames/s detection at 720p, >= 2,000
faces/s ResNet-50. ``--quick`` runs every part at toy sizes (the test of this script on a CPU);
its figures are not benchmarks.

    python -m tests.benchmarks.bench_gpu --out reports/benchmarks/gpu.json
    python -m tests.benchmarks.bench_gpu --device cpu --quick --out /tmp/gpu_smoke.json
    python -m tests.benchmarks.bench_gpu --parts embeddings,training   # no video decoding
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLIP = SHARED / "crema-d-sample" / "VideoFlash" / "1001_DFA_HAP_XX.flv"
AFFWILD2_WINDOWS = 46_000


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def per_second(fn, n: int, device: str) -> float:
    """Items per second of ``fn()`` processing ``n`` items, after one warm-up call."""
    fn()
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return n / (time.perf_counter() - t)


def frames_720p(clip: Path, n: int) -> list[np.ndarray]:
    """``n`` 1280x720 RGB frames: the clip's frames upscaled to 960x720, letterboxed, looped."""
    import cv2

    from pipeline.data.media import iter_video_frames

    if not clip.is_file():
        raise SystemExit(f"{clip}: CREMA-D clip not found (set AVEMO_SHARED_DATA)")
    frames = [
        np.pad(cv2.resize(rgb, (960, 720)), ((0, 0), (160, 160), (0, 0)))
        for _, _, rgb in iter_video_frames(clip)
    ]
    return [frames[i % len(frames)] for i in range(n)]


def bench_detection(device: str, frames: list[np.ndarray], batches: list[int]) -> dict:
    from pipeline.video.detectors import MTCNNTorchDetector

    det = MTCNNTorchDetector(min_face_px=20, device=device)
    out = {}
    for b in batches:
        fps = per_second(
            lambda b=b: [det.detect(frames[i : i + b]) for i in range(0, len(frames), b)],
            len(frames),
            device,
        )
        out[str(b)] = round(fps, 1)
        print(f"mtcnn_torch 720p batch {b:4d}: {fps:8.1f} frames/s", flush=True)
    found = np.mean([bool(d) for d in det.detect(frames[: batches[-1]])])
    return {"frames_per_s_by_batch": out, "frames": len(frames), "found_rate": float(found)}


def bench_embeddings(device: str, n: int, batches: list[int]) -> dict:
    from pipeline.embed.fer_xception import MiniXception
    from pipeline.embed.resnet50_vggface2 import ResNet50VGGFace2, embed_faces_resnet

    faces = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    xception = MiniXception().to(device).eval()
    resnet = ResNet50VGGFace2()
    out: dict[str, dict] = {"fer_xception": {}, "vggface2_resnet50": {}}
    for b in batches:
        fps = per_second(lambda b=b: xception.embed(faces, batch_size=b), n, device)
        out["fer_xception"][str(b)] = round(fps, 1)
        fps_r = per_second(lambda b=b: embed_faces_resnet(resnet, faces, b, device), n, device)
        out["vggface2_resnet50"][str(b)] = round(fps_r, 1)
        print(
            f"embed batch {b:4d}: mini-Xception {fps:8.1f}, ResNet-50 {fps_r:8.1f} faces/s",
            flush=True,
        )
    return {"faces_per_s_by_batch": out, "faces": n, "input": "224x224 uint8 RGB crops"}


def bench_training(device: str, n_windows: int, n_faces: int) -> dict:
    from pipeline.embed.fer_xception import MiniXception
    from pipeline.embed.finetune import FineTuneConfig, finetune
    from pipeline.models.lstm import LSTMSequenceClassifier

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    lstm_cfg, ft = params["fit"]["lstm"], params["finetune_faces"]
    rng = np.random.default_rng(0)
    seq, dim = lstm_cfg["seq_len"], 256  # 256: 2 x 128 (mean, std of a 128-d embedding)
    X = rng.standard_normal((n_windows, seq, dim)).astype(np.float32)
    y = rng.integers(0, 7, n_windows)
    lstm = LSTMSequenceClassifier(
        hidden=lstm_cfg["hidden"],
        layers=lstm_cfg["layers"],
        dropout=lstm_cfg["dropout"],
        epochs=1,
        batch_size=lstm_cfg["batch_size"],
        patience=None,
        validation_fraction=0.0,
        device=device,
        random_state=0,
    )
    t = time.perf_counter()
    lstm.fit(X, y)
    _sync(device)
    lstm_s = time.perf_counter() - t
    print(f"LSTM: {lstm_s:.1f} s per epoch of {n_windows} windows", flush=True)

    faces = rng.integers(0, 256, (n_faces, 224, 224, 3), dtype=np.uint8)
    labels = rng.integers(0, 6, n_faces)
    cfg = FineTuneConfig(
        epochs=1,
        batch_size=ft["batch_size"],
        lr=ft["lr"],
        weight_decay=ft["weight_decay"],
        class_weight_r=ft["class_weight_r"],
        thinning=(),
        rotation_deg=ft["rotation_deg"],
        flip=ft["flip"],
        brightness=tuple(ft["brightness"]),
        hidden=ft["hidden"],
        dropout=ft["dropout"],
    )
    dev = (faces[: max(2, n_faces // 10)], labels[: max(2, n_faces // 10)])
    t = time.perf_counter()
    finetune(MiniXception(), (faces, labels), dev, 6, cfg, seed=0, device=device)
    _sync(device)
    ft_s = time.perf_counter() - t
    print(f"finetune_faces: {ft_s:.1f} s per epoch of {n_faces} faces", flush=True)
    return {
        "lstm_epoch_s": round(lstm_s, 2),
        "lstm_windows": n_windows,
        "lstm_shape": [seq, dim],
        "lstm_epoch_s_affwild2": round(lstm_s * AFFWILD2_WINDOWS / n_windows, 1),
        "finetune_epoch_s_per_1000_faces": round(ft_s * 1000 / n_faces, 2),
        "finetune_faces": n_faces,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="toy sizes (a smoke test, not figures)")
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "gpu.json")
    p.add_argument(
        "--parts",
        default="detection,embeddings,training",
        help="comma-separated subset of detection, embeddings, training",
    )
    args = p.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"detection", "embeddings", "training"}:
        raise SystemExit(
            f"--parts: expected detection, embeddings and/or training, got {args.parts!r}"
        )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    if args.quick:
        det_batches, n_frames, emb_batches, n_faces = [1, 4], 4, [4], 8
        n_windows, n_train_faces = 64, 16
    else:
        det_batches, n_frames, emb_batches, n_faces = [1, 8, 32, 64], 256, [64, 256, 1024], 4096
        n_windows, n_train_faces = AFFWILD2_WINDOWS, 8192
    torch.manual_seed(0)
    t0 = time.perf_counter()
    result = {
        "device": args.device,
        "device_name": (
            torch.cuda.get_device_name(args.device)
            if args.device.startswith("cuda")
            else platform.processor() or platform.machine()
        ),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "quick": args.quick,
    }
    if "detection" in parts:
        frames = frames_720p(args.clip, n_frames)
        result["detection_720p"] = bench_detection(args.device, frames, det_batches)
    if "embeddings" in parts:
        result["embeddings"] = bench_embeddings(args.device, n_faces, emb_batches)
    if "training" in parts:
        result["training"] = bench_training(args.device, n_windows, n_train_faces)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
