"""Benchmark: Spleeter real-time factor, model loaded once vs loaded per file, and SDR gain.

On real EmoDB utterances (2 s each, resampled to 16 kHz), in one run:
- real-time factor (processing seconds / audio seconds) with one VocalSeparator for all files;
- the same files with a new VocalSeparator (model load) per file;
- SDR gain on 8 s of speech mixed with synthetic music and with pink noise at 5 dB SNR.

    python -m tests.benchmarks.bench_separate_vocals --out reports/benchmarks/separate_vocals.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/separate_vocals.json"))
    p.add_argument("--model", type=Path, default=ROOT / "models/pretrained/spleeter/2stems")
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--per-file-loads", type=int, default=4)
    args = p.parse_args()

    from pipeline.audio.separate import VocalSeparator, sdr_db
    from pipeline.data.demo import background_track

    files = sorted((SHARED / "emodb" / "wav").glob("*.wav"))[: args.files]
    waves = [
        librosa.resample(sf.read(f, dtype="float32")[0], orig_sr=22050, target_sr=16000)
        for f in files
    ]
    t = time.perf_counter()
    sep = VocalSeparator(args.model)
    load_s = time.perf_counter() - t
    sep.vocals(waves[0], 16000)  # warm-up
    t = time.perf_counter()
    for w in waves:
        sep.vocals(w, 16000)
    once_s = time.perf_counter() - t
    audio_s = sum(len(w) for w in waves) / 16000
    t = time.perf_counter()
    for w in waves[: args.per_file_loads]:
        VocalSeparator(args.model).vocals(w, 16000)
    per_file_s = time.perf_counter() - t
    per_file_audio = sum(len(w) for w in waves[: args.per_file_loads]) / 16000

    speech = np.concatenate(waves[:4])
    gains = {}
    for name, seed in (("music", 2), ("pink_noise", 0)):
        bg = background_track(np.random.default_rng(seed), len(speech), 16000)
        mix = speech + bg * np.sqrt(np.mean(speech**2)) * 10 ** (-5 / 20)
        gains[name] = sdr_db(speech, sep.vocals(mix, 16000)) - sdr_db(speech, mix)
    out = {
        "machine": f"{os.cpu_count()} CPU cores",
        "model_load_s": load_s,
        "rtf_model_loaded_once": once_s / audio_s,
        "rtf_model_loaded_per_file": per_file_s / per_file_audio,
        "speedup_loaded_once": (per_file_s / per_file_audio) / (once_s / audio_s),
        "audio_s_loaded_once": audio_s,
        "sdr_gain_db_5db_snr": gains,
    }
    print(
        f"model load {load_s:.1f} s; RTF loaded once {out['rtf_model_loaded_once']:.3f}, "
        f"loaded per file {out['rtf_model_loaded_per_file']:.3f} "
        f"({out['speedup_loaded_once']:.1f}x); SDR gain music {gains['music']:+.2f} dB, "
        f"pink noise {gains['pink_noise']:+.2f} dB"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
