"""Benchmark: epochs of the FER-2013 face network's training loop in float32 and in bf16 autocast.

``pretrain_faces.precision`` (and ``distil_faces.precision``) chooses the arithmetic of the
training forward passes (:func:`pipeline.models.lstm.fit_torch_classifier`). This times, in
one run and alternating so a busy machine slows both alike, an epoch of the pipeline's training
loop (flips and shifts, forward, loss, backward, Adam; ``--batches`` batches of 64 random
48 x 48 faces) for each width of ``pretrain_faces.channels`` the README discusses, both ways,
and reports the best epoch's milliseconds per batch, the minutes an epoch of FER-2013's
28,709 Training faces takes at that rate (without the PublicTest pass), and the CPU's bf16
flags: bf16 is fast where the CPU has avx512_bf16 or AMX, and emulated (slower than float32)
where it has neither.

    python -m tests.benchmarks.bench_train_precision --out reports/benchmarks/train_precision.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pipeline.models.lstm import fit_torch_classifier
from pipeline.models.vgg_faces import VGGFaceNet, augment_faces

WIDTHS = ((32, 64, 128), (48, 96, 192), (64, 128, 256))
FER_TRAINING_ROWS = 28_709
BATCH = 64  # pretrain_faces.batch_size


def cpu_flags() -> list[str]:
    """The bf16-related flags of this CPU (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    lines = [ln for ln in text.splitlines() if ln.startswith("flags")]
    flags = lines[0].split(":", 1)[1].split() if lines else []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def epoch_seconds(channels, x, y, precision: str) -> float:
    """Seconds of one epoch of the pipeline's training loop (augmentation included, no
    validation) on ``(x, y)``, for a fresh seeded network of ``channels``."""
    torch.manual_seed(0)
    net = VGGFaceNet(7, channels, dropout=0.1)
    start = time.perf_counter()
    fit_torch_classifier(
        net, x, y, None, None, epochs=1, lr=1e-3, batch_size=BATCH, patience=None, tol=0.0,
        class_weights=None, device="cpu", generator=torch.Generator().manual_seed(0),
        weight_decay=1e-4, grad_clip=5.0, augment=augment_faces, cosine=True,
        precision=precision,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=10, help="batches of 64 per epoch")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per width and precision")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/train_precision.json"))
    args = p.parse_args()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batches * BATCH, 1, 48, 48, generator=gen)
    y = torch.randint(0, 7, (args.batches * BATCH,), generator=gen)
    rows = []
    for channels in WIDTHS:
        for precision in ("fp32", "bf16"):  # warm-up: oneDNN picks its kernels on first calls
            epoch_seconds(channels, x[:BATCH], y[:BATCH], precision)
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.repeats):  # alternate, so a busy machine slows both alike
            for precision in times:
                times[precision].append(epoch_seconds(channels, x, y, precision))
        ms = {k: 1000 * min(v) / args.batches for k, v in times.items()}
        fer_batches = -(-FER_TRAINING_ROWS // BATCH)
        row = {
            "channels": list(channels),
            "fp32_ms_per_batch": round(ms["fp32"], 1),
            "bf16_ms_per_batch": round(ms["bf16"], 1),
            "speedup": round(ms["fp32"] / ms["bf16"], 2),
            "fp32_min_per_fer_epoch": round(ms["fp32"] * fer_batches / 60_000, 2),
            "bf16_min_per_fer_epoch": round(ms["bf16"] * fer_batches / 60_000, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    res = {
        "batch_size": BATCH,
        "batches": args.batches,
        "repeats": args.repeats,
        "widths": rows,
        "cpu_bf16_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
