"""Benchmark: which audio embedding helps speech emotion recognition, measured on EmoDB.

Leave-one-speaker-out over the 8 EmoDB speakers in ../shared/data (408 utterances, 2 s), an
utterance = mean and std over time of each backbone's frame features, standardised on the
training fold, logistic regression (C=1). Reports UAR and accuracy per backbone and the
extraction cost. This is how ``ge2e_lstm`` was chosen (README, "Backbones").

    python -m tests.benchmarks.bench_audio_emodb --out reports/benchmarks/audio_emodb.json
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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/audio_emodb.json"))
    p.add_argument("--pretrained", type=Path, default=ROOT / "models/pretrained")
    args = p.parse_args()
    from pipeline.embed.audio_features import load_audio_backbone

    files = sorted((SHARED / "emodb" / "wav").glob("*.wav"))
    waves = [
        librosa.resample(sf.read(f, dtype="float32")[0], orig_sr=22050, target_sr=16000)
        for f in files
    ]
    speakers = np.array([f.name[:2] for f in files])
    y = np.array(["WLEAFTN".index(f.name[5]) for f in files])
    audio_s = sum(len(w) for w in waves) / 16000
    res = {"utterances": len(files), "speakers": sorted(set(speakers)), "backbones": {}}
    for name in ("mfcc", "logmel", "ge2e_lstm"):
        bb = load_audio_backbone(  # rate 100 Hz: keep the 10 ms frames
            name, pretrained_dir=args.pretrained, weights=None, device="cpu", rate_hz=100.0
        )
        t = time.perf_counter()
        X = []
        for w in waves:
            _, x = bb.embed(w, 16000, len(w) / 16000)
            X.append(np.concatenate([x.mean(0), x.std(0)]))
        cost = (time.perf_counter() - t) / audio_s
        X = np.array(X)
        uar, acc = [], []
        for spk in sorted(set(speakers)):
            test = speakers == spk
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
            clf.fit(X[~test], y[~test])
            pred = clf.predict(X[test])
            uar.append(balanced_accuracy_score(y[test], pred))
            acc.append(accuracy_score(y[test], pred))
        res["backbones"][name] = {
            "dim": int(X.shape[1]),
            "uar": float(np.mean(uar)),
            "accuracy": float(np.mean(acc)),
            "uar_per_speaker": [round(u, 4) for u in uar],
            "seconds_per_audio_second": cost,
        }
        print(
            f"{name:10s} dim {X.shape[1]:4d}  UAR {np.mean(uar):.3f}  acc {np.mean(acc):.3f}  "
            f"{cost:.4f} s per audio s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
