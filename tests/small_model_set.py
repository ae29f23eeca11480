"""A small trained model set, made by the real stage entry points (no DVC, no network beyond
the pretrained checkpoints), for tests that need what ``make demo`` trains.

:func:`build_model_set` lays out a project folder like the real one (``data/interim``,
``features``, ``models/{pretrained,finetune_faces,fit,fuse}``) from the six real CREMA-D
clips: every clip three times (ids ``a_*`` and ``c_*`` in train, ``b_*`` in dev or test;
two train videos per class give the SVM's calibration folds by video), dlib faces at 2.5 fps,
no vocal separation, the FER backbone plus the fine-tuned one and MFCCs, 1 s windows, every
classifier (SVM, KELM, LSTM) on every feature, the raw-audio CNN, small model-level fusion
networks (conv + LSTM, attention + FBP) on FER + MFCC embeddings, seed 003's feature-level
fusion network (no pre-training corpus: random initialisation), fusion over all of them, and
``evaluate`` (``reports/``).
Tiny and not a benchmark of anything: it exists so that every prediction path has a trained
model behind it. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]

# tiny model-level fusion networks (also the DVC test's: tests/stages/test_dvc_repro.py)
SMALL_NETS = {
    "conv_lstm": {
        "channels": 8,
        "kernels": [1, 3, 5],
        "pool": 3,
        "lstm_hidden": 16,
        "lstm_layers": 2,
        "dropout": 0.0,
    },
    "attention_fbp": {
        "visual_attention": "self",
        "audio_attention": "transformer",
        "fusion": "fbp",
        "fbp_k": 2,
        "fbp_out": 8,
        "dropout": 0.0,
        "hidden": None,
        "attention_hidden": 8,
        "input_norm": True,
        "power_norm": True,
    },
}

# seed 003 without its corpora (skip records) and a tiny feature-level fusion network (also
# the DVC test's)
SMALL_SEED003 = {
    "pretrain_faces": {"channels": [4, 8, 8]},
    "pretrain_audio": {"filters": 4, "lstm_hidden": 8},
    "fit_feature_fusion": {"epochs": 1, "faces_per_segment": 2, "hidden": 8},
}

# params overrides: cheap settings, every model kind and feature kind
SMALL = {
    "base": {"n_jobs": 1, "device": "cpu"},
    "build_manifest": {"adapter": "csv", "root": "data/raw/crema", "csv_file": "table.csv"},
    "detect_faces": {"detector": "dlib", "fps": 2.5},
    "separate_vocals": {"method": "none"},
    "embed_faces": {"backbones": {"fer_xception": {"weights": None, "enhance": "none"}}},
    "finetune_faces": {"epochs": 1, "oof_folds": 0, "batch_size": 16},
    "embed_audio": {"backbones": {"mfcc": {"weights": None}}},
    "window_stats": {
        "window_s": 1.0,
        "features": {
            "fer": "faces/fer_xception",
            "finetuned": "faces/finetuned",
            "mfcc": "audio/mfcc",
        },
    },
    "fit": {
        "models": ["svm", "kelm", "lstm"],
        "features": ["fer", "finetuned", "mfcc"],
        "lstm": {"epochs": 3, "patience": 2, "seq_len": 2},
    },
    "fit_raw_audio": {"epochs": 1, "window_s": 1.0, "patience": 1},
    "fit_fusion_net": {
        "faces": "faces/fer_xception",
        "audio": "audio/mfcc",
        "seq_len": 6,
        "hop": 3,
        "epochs": 2,
        "nets": SMALL_NETS,
    },
    "fuse": {"n_draws": 50, "cv_folds": 3, "rule": "mcwf"},  # every model reaches predict
    **SMALL_SEED003,
}
DEV = ("ANG", "HAP", "SAD")  # the b_ copies of these clips are dev, the others test


def small_params(dst: Path, **changes: dict) -> Path:
    """The project's params.yaml with :data:`SMALL` (and ``changes``) merged in, at ``dst``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for overrides in (SMALL, changes):
        for section, values in overrides.items():
            for key, value in values.items():
                if isinstance(value, dict) and isinstance(params[section].get(key), dict):
                    if key in ("backbones", "features"):  # replace these mappings
                        params[section][key] = value
                    else:
                        params[section][key] = {**params[section][key], **value}
                else:
                    params[section][key] = value
    dst.write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


# per-frame valence/arousal of each emotion (base.task va): roughly its place on Russell's
# circumplex, as the demo derives its VA labels (they exercise the path, they are no ratings)
VA = {
    "anger": (-0.6, 0.7),
    "disgust": (-0.6, 0.3),
    "fear": (-0.5, 0.6),
    "happiness": (0.7, 0.5),
    "neutral": (0.0, 0.0),
    "sadness": (-0.6, -0.4),
}


def build_model_set(root: Path, clips: list[Path], pretrained: Path, task: str = "expr") -> Path:
    """Run the stages on the clips under ``root``; returns the params file (``root/params.yaml``).

    ``root/models`` is then a trained model set; ``root/models/pretrained`` links to
    ``pretrained`` (verified checkpoints). With ``task="va"`` every clip gets a per-frame
    valence/arousal file (:data:`VA`) and the fit matrix drops the LSTM (classification only).
    """
    from pipeline.data.media import probe
    from stages import (
        build_manifest,
        detect_faces,
        embed_audio,
        embed_faces,
        evaluate,
        extract_audio,
        finetune_faces,
        fit,
        fit_feature_fusion,
        fit_fusion_net,
        fit_raw_audio,
        fuse,
        pretrain_audio,
        pretrain_faces,
        resample_labels,
        separate_vocals,
        window_stats,
    )

    ds = root / "data" / "raw" / "crema"
    ds.mkdir(parents=True)
    lines = ["media,split,label,label_file,video_id,speaker"]
    for clip in clips:
        shutil.copy(clip, ds / clip.name)
        code = clip.stem.split("_")[2]
        label = {
            "ANG": "anger",
            "DIS": "disgust",
            "FEA": "fear",
            "HAP": "happiness",
            "NEU": "neutral",
            "SAD": "sadness",
        }[code]
        label_file = ""
        if task == "va":  # a per-frame file, gently moving around the emotion's place
            label_file, n = f"{clip.stem}.txt", probe(clip).n_frames
            v, a = VA[label]
            ramp = 0.1 * np.sin(np.arange(n) / 7)
            pairs = "\n".join(f"{v + r:.3f},{a - r:.3f}" for r in ramp)
            (ds / label_file).write_text("valence,arousal\n" + pairs + "\n")
            label = ""
        for copy in ("a", "c"):
            lines.append(f"{clip.name},train,{label},{label_file},{copy}_{clip.stem},1001")
        split = "dev" if code in DEV else "test"
        lines.append(f"{clip.name},{split},{label},{label_file},b_{clip.stem},1001")
    (ds / "table.csv").write_text("\n".join(lines) + "\n")
    changes: dict[str, dict] = {"build_manifest": {"root": str(ds)}}
    if task == "va":
        changes |= {"base": {"task": "va"}, "fit": {"models": ["svm", "kelm"]}}
    params = small_params(root / "params.yaml", **changes)
    fit_models = yaml.safe_load(params.read_text())["fit"]["models"]
    (root / "models").mkdir()
    (root / "models" / "pretrained").symlink_to(pretrained.resolve())

    p = ["--params", str(params)]
    it, feats, models = root / "data" / "interim", root / "features", root / "models"
    manifest = it / "manifest.csv"
    labels = it / "labels_5hz.h5"
    source = str(it / "vocals")

    def run(main, **paths):
        args = [x for k, v in paths.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        main(args + p)

    run(build_manifest.main, src=ds, dst=manifest, report=it / "manifest_report.json")
    run(detect_faces.main, manifest=manifest, dst=it / "faces", report=it / "faces_report.json")
    run(extract_audio.main, manifest=manifest, dst=it / "audio", report=it / "audio_report.json")
    run(
        separate_vocals.main,
        manifest=manifest,
        audio=it / "audio",
        model=models / "pretrained" / "spleeter" / "2stems",
        dst=source,
        report=it / "vocals_report.json",
    )
    run(resample_labels.main, manifest=manifest, dst=labels)
    run(
        embed_faces.main,
        backbone="fer_xception",
        manifest=manifest,
        faces=it / "faces",
        pretrained=models / "pretrained",
        dst=feats / "faces" / "fer_xception.h5",
    )
    run(
        finetune_faces.main,
        manifest=manifest,
        faces=it / "faces",
        labels=labels,
        pretrained=models / "pretrained",
        model=models / "finetune_faces" / "model.pt",
        history=models / "finetune_faces" / "history.csv",
        dst=feats / "faces" / "finetuned.h5",
    )
    run(
        embed_audio.main,
        backbone="mfcc",
        manifest=manifest,
        audio=source,
        pretrained=models / "pretrained",
        dst=feats / "audio" / "mfcc.h5",
    )
    for name, src in SMALL["window_stats"]["features"].items():
        run(
            window_stats.main,
            embeddings=feats / f"{src}.h5",
            labels=labels,
            dst=feats / "windows" / f"{name}.h5",
        )
    for model in fit_models:
        for feature in SMALL["fit"]["features"]:
            run(
                fit.main,
                model=model,
                feature=feature,
                windows=feats / "windows" / f"{feature}.h5",
                dst=models / "fit" / f"{model}_{feature}",
            )
    no_corpus = root / "no_corpus"  # seed 003's pre-training: skip records (untrained nets)
    no_corpus.mkdir()
    face_ckpt, audio_ckpt = (models / f"pretrain_{k}" / "model.pt" for k in ("faces", "audio"))
    for main, ckpt in ((pretrain_faces.main, face_ckpt), (pretrain_audio.main, audio_ckpt)):
        run(main, root=no_corpus, model=ckpt, report=root / "reports" / f"{ckpt.parent.name}.json")
    for net in ("cnn_lstm_raw", "spec_attention"):
        run(
            fit_raw_audio.main,
            net=net,
            audio=source,
            labels=labels,
            pretrained=audio_ckpt,
            dst=models / "fit" / net,
        )
    run(
        fit_feature_fusion.main,
        faces=it / "faces",
        audio=source,
        labels=labels,
        face_model=face_ckpt,
        audio_model=audio_ckpt,
        dst=models / "fit" / "feature_fusion",
    )
    for net in ("conv_lstm", "attention_fbp"):
        run(
            fit_fusion_net.main,
            net=net,
            faces=feats / "faces" / "fer_xception.h5",
            audio=feats / "audio" / "mfcc.h5",
            labels=labels,
            dst=models / "fit" / net,
        )
    run(fuse.main, scores=models / "fit", labels=labels, dst=models / "fuse")
    rep = root / "reports"
    run(
        evaluate.main,
        scores=models / "fit",
        fused=models / "fuse",
        labels=labels,
        manifest=manifest,
        metrics=rep / "metrics.json",
        summary=rep / "summary.md",
        plots=rep / "plots",
        figures=rep / "figures",
    )
    return params
