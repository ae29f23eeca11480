"""Benchmark: the raw-audio networks on EmoDB speakers they never heard.

The 1D CNN + LSTM (model 4 of the ABAW paper) under several training recipes, and seed 001's
spectrogram CNN with attention (``spec_*`` settings: front end x attention kind).

The split of ``configs/emodb.yaml``: train speakers 11-14, dev 03 08 (early stopping), test
09 10; the 2 s utterances of ../shared/data/emodb resampled to 16 kHz, one 2 s window each,
the paper's log class weights (r = 0.34). Trains
:class:`pipeline.models.audio_cnn_lstm.AudioCNNLSTMClassifier` once per setting and seed
(``--seeds``, default 13) and reports for each run the training curve (train and dev loss
per epoch), the epoch kept (lowest dev loss), dev and test UAR and accuracy of the kept
weights and the classes it predicts; then the mean over seeds (two speakers per split make
one run's figures swing by 0.1 UAR).

    python -m tests.benchmarks.bench_raw_audio_emodb --out reports/benchmarks/raw_audio_emodb.json
    python -m tests.benchmarks.bench_raw_audio_emodb --settings pipeline learned_filterbank \
        --seeds 13 1 2 --out reports/benchmarks/raw_audio_filterbank.json
    python -m tests.benchmarks.bench_raw_audio_emodb --settings spec_spectrogram_self \
        spec_logmel_self --out reports/benchmarks/spec_attention_emodb.json
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
import torch
import yaml
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from pipeline.models.audio_cnn_lstm import AudioCNNLSTMClassifier

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AVEMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
CODES = "NWLEAFT"  # neutral anger boredom disgust fear happiness sadness (configs/emodb.yaml)
_RAW = yaml.safe_load((ROOT / "params.yaml").read_text())["fit_raw_audio"]
PIPELINE = {  # fit_raw_audio of params.yaml (configs/emodb.yaml changes only window_s)
    **{
        k: v
        for k, v in _RAW.items()
        if k
        in ("epochs", "lr", "batch_size", "patience", "augment", "spec_masks", "cosine", "ema")
    },
    "net_params": {"filterbank": _RAW["nets"]["cnn_lstm_raw"]["filterbank"]},
}
SETTINGS = {
    "pipeline": PIPELINE,
    # the first layer from random real kernels instead of mel-centred Gabor filters
    "learned_filterbank": {**PIPELINE, "net_params": {"filterbank": "learned"}},
    # the recipe before the Gabor start: learned filterbank, 60 epochs, patience 20
    "learned_60": {
        **PIPELINE,
        "epochs": 60,
        "patience": 20,
        "net_params": {"filterbank": "learned"},
    },
    "gabor_60": {**PIPELINE, "epochs": 60, "patience": 20},
    "pipeline_cosine": {**PIPELINE, "cosine": True},
    "no_augment": {**PIPELINE, "augment": False, "spec_masks": 0},
    "no_masks": {**PIPELINE, "spec_masks": 0},
    "no_average": {**PIPELINE, "ema": None},
    # the recipe before this benchmark (paper's lr, no augmentation, no weight average)
    "paper_lr": dict(epochs=15, lr=0.00025, batch_size=16, patience=4),
    # seed 001's spectrogram CNN + attention (fit_raw_audio.nets.spec_attention), same recipe
    **{
        f"spec_{front}_{attention}": {
            **PIPELINE,
            "net": "spec_attention",
            "net_params": {"front_end": front, "attention": attention, "sample_rate": 16000},
        }
        for front in ("spectrogram", "logmel")
        for attention in ("self", "relation", "transformer")
    },
}


def run_setting(
    setting: dict, seed: int, x: np.ndarray, y: np.ndarray, split: dict[str, np.ndarray]
) -> dict:
    """Train one setting with one seed on the train speakers (early stopping on dev) and
    score dev and test: the training curve, the kept epoch, UAR and accuracy."""
    torch.manual_seed(seed)
    clf = AudioCNNLSTMClassifier(
        **setting, class_weight="log", class_weight_r=0.34, random_state=seed
    )
    t = time.perf_counter()
    clf.fit(x[split["train"]], y[split["train"]], x[split["dev"]], y[split["dev"]])
    seconds = time.perf_counter() - t
    t = time.perf_counter()
    clf.predict_proba(x[split["test"]])
    row = {
        "seed": seed,
        "seconds": round(seconds),
        "seconds_per_epoch": round(seconds / clf.n_epochs_, 2),
        "predict_ms_per_window": round(1000 * (time.perf_counter() - t) / split["test"].sum(), 2),
        "best_epoch": clf.best_epoch_,
        "dev_loss_min": round(min(h["val_loss"] for h in clf.history_), 4),
        "curve": [
            [h["epoch"], round(h["train_loss"], 4), round(h["val_loss"], 4)] for h in clf.history_
        ],
    }
    for s in ("dev", "test"):
        pred = clf.predict(x[split[s]])
        row[s] = {
            "uar": round(balanced_accuracy_score(y[split[s]], pred), 3),
            "accuracy": round(accuracy_score(y[split[s]], pred), 3),
            "predicted_classes": sorted({CODES[k] for k in pred}),
        }
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/raw_audio_emodb.json"))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[13], help="one run per seed")
    args = p.parse_args()
    files = sorted((SHARED / "emodb" / "wav").glob("*.wav"))
    x = np.stack(
        [
            librosa.resample(sf.read(f, dtype="float32")[0], orig_sr=22050, target_sr=16000)
            for f in files
        ]
    )[:, :32000]
    spk = np.array([f.name[:2] for f in files])
    y = np.array([CODES.index(f.name[5]) for f in files])
    split = {
        "train": np.isin(spk, ["11", "12", "13", "14"]),
        "dev": np.isin(spk, ["03", "08"]),
        "test": np.isin(spk, ["09", "10"]),
    }
    res = {"windows": {k: int(v.sum()) for k, v in split.items()}, "settings": {}}
    for name in args.settings:
        runs = [run_setting(SETTINGS[name], seed, x, y, split) for seed in args.seeds]
        for run in runs:
            print(name, {k: v for k, v in run.items() if k != "curve"}, flush=True)
        mean = {
            f"{s}_{m}": round(float(np.mean([r[s][m] for r in runs])), 3)
            for s in ("dev", "test")
            for m in ("uar", "accuracy")
        }
        mean["dev_loss_min"] = round(float(np.mean([r["dev_loss_min"] for r in runs])), 4)
        print(name, "mean over seeds", args.seeds, mean, flush=True)
        res["settings"][name] = {"params": SETTINGS[name], "runs": runs, "mean": mean}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
