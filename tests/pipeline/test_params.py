"""Typed params: the real params.yaml loads for every stage; mistakes anywhere in the file
fail every stage with one line naming the file and the dotted param."""

from pathlib import Path

import pytest
import yaml

from pipeline.errors import ParamsError
from pipeline.params import STAGES, load_base, load_params

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _real():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _with(dotted, value):
    """The real params with ``dotted`` (e.g. ``fit.kelm.C``) set to ``value``."""
    data = _real()
    *parents, key = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    return data


def _error(tmp_path, data, stage="get_pretrained"):
    with pytest.raises(ParamsError) as exc:
        load_params(stage, _write(tmp_path, data))
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'params.yaml'}: ")
    return message


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_loads_from_the_real_params(stage):
    cfg = load_params(stage, ROOT / "params.yaml")
    _, base_keys = STAGES[stage]
    base = load_base(ROOT / "params.yaml")
    for key in base_keys:  # base keys arrive with base's values
        assert getattr(cfg, key) == getattr(base, key)


def test_lists_become_tuples_and_ints_become_floats():
    cfg = load_params("make_demo", ROOT / "params.yaml")
    assert isinstance(cfg.duration_s, tuple) and all(isinstance(v, float) for v in cfg.duration_s)
    assert isinstance(load_params("build_manifest", ROOT / "params.yaml").classes, tuple)
    lstm = load_params("fit.lstm", ROOT / "params.yaml")
    assert lstm.seq_len == _real()["fit"]["lstm"]["seq_len"]  # no getattr default in stages/fit.py


def test_window_stats_reads_only_its_declared_keys():
    cfg = load_params("window_stats", ROOT / "params.yaml")
    assert set(vars(cfg)) == {"window_s", "overlap", "min_valid_frac", "label_rate_hz", "classes"}


# Each case: the dotted param, a bad value, and what the message says about it. The stage
# loaded (get_pretrained) reads none of them: the whole file is checked on every load.
@pytest.mark.parametrize(
    "dotted,value,problem",
    [
        ("detect_faces.min_face_px", -5, "must be >= 1 (got -5)"),
        ("detect_faces.size_px", 0, "must be >= 8 (got 0)"),
        ("detect_faces.fps", 0, "must be > 0 (got 0)"),
        (
            "detect_faces.detector",
            "retinaface",
            "must be 'mtcnn', 'mtcnn_torch' or 'dlib' (got 'retinaface')",
        ),
        ("detect_faces.dlib_landmarks", "68", "must be 5 or 68 (got '68')"),
        ("extract_audio.rate_hz", 0, "must be >= 8000 (got 0)"),
        ("base.classes", ["neutral"], "at least two classes"),
        ("base.classes", ["neutral", "neutral"], "must not repeat a name"),
        ("base.classes", ["neutral", "Neutral"], "must not repeat a name (case-insensitive)"),
        ("base.task", "valence", "must be 'expr' or 'va' (got 'valence')"),
        ("base.seed", "13", "must be an integer (got '13')"),
        ("base.seed", True, "must be an integer (got True)"),  # a bool is not an int
        ("base.n_jobs", 0, "a positive count, or -1"),
        ("base.executor", "slurm", "must be 'local' or 'dask' (got 'slurm')"),
        ("base.executor", "dask", "dask needs base.dask_scheduler (the scheduler address)"),
        ("base.label_rate_hz", 0, "must be > 0 (got 0)"),
        ("build_manifest.max_label_mismatch_s", -1, "must be >= 0 (got -1)"),
        ("build_manifest.strict", "yes", "must be true or false (got 'yes')"),
        (
            "build_manifest.adapter",
            "affwild",
            "'afew', 'fer2013', 'recola' or 'csv'",
        ),
        ("make_demo.n_videos", 2.5, "must be an integer (got 2.5)"),
        ("make_demo.n_videos", True, "must be an integer (got True)"),
        ("make_demo.duration_s", [30, 20], "low <= high"),
        ("make_demo.split_counts", {"train": 1, "dev": 1, "test": 1}, "add up to n_videos"),
        ("make_demo.gap_prob", 1.5, "must be <= 1 (got 1.5)"),
        ("separate_vocals.overlap_s", 20, "must be < chunk_s / 2 = 15 (got 20)"),
        ("finetune_faces.lr", 0, "must be > 0 (got 0)"),
        ("finetune_faces.dropout", 1, "must be < 1 (got 1)"),
        ("window_stats.overlap", 1.0, "must be < 1 (got 1.0)"),
        ("window_stats.window_s", 0, "must be > 0 (got 0)"),
        ("fit.kelm.C", -1, "must be > 0 (got -1)"),
        ("fit.kelm.C", "10", "must be a number (got '10')"),
        ("fit.kelm.gamma", -1, "must be > 0 or 'scale' or 'auto' (got -1)"),
        ("fit.kelm.max_train", 1, "must be >= 2 (got 1)"),
        ("fit.svm.C", -1, "must be > 0 (got -1)"),
        ("fit.svm.degree", -2, "must be >= 1 (got -2)"),
        ("fit.lstm.hidden", 0, "must be >= 1 (got 0)"),
        ("fit.lstm.epochs", 0, "must be >= 1 (got 0)"),
        ("fit.lstm.dropout", -0.1, "must be >= 0 (got -0.1)"),
        ("fit.models", ["svm", "knn"], "'svm', 'kelm' or 'lstm' (got 'knn')"),
        ("fit.features", ["fer", "nope"], "['nope'] not in window_stats.features"),
        ("fuse.models", ["svm_fer"], "[all] or >= 2 of the pipeline's models"),
        ("fuse.models", ["svm_fer", "svm_nope"], "[all] or >= 2 of the pipeline's models"),
        ("fuse.n_draws", -1, "must be >= 0 (got -1)"),
        ("fuse.concentration", 0, "must be > 0 (got 0)"),
        ("fit_raw_audio.patience", 0, "must be >= 1 (got 0)"),
        ("fit_raw_audio.nets", {}, "must not be empty (got {})"),
        ("fit_raw_audio.nets.spec_attention.front_end", "mfcc", "'spectrogram' or 'logmel'"),
        ("fit_raw_audio.nets.spec_attention.channels", [], "must not be empty"),
        ("fit_raw_audio.nets.cnn_lstm_raw", {"front_end": "logmel"}, "nets.cnn_lstm_raw"),
        ("fit_fusion_net.faces", "fer_xception", "should match pattern"),
        ("fit_fusion_net.faces", "faces/vggface2_resnet50", "'vggface2_resnet50' is not made"),
        ("fit_fusion_net.audio", "audio/cnn14", "'cnn14' is not made (embed_audio.backbones"),
        ("fit_fusion_net.batch_size", 1, "must be >= 2 (got 1)"),
        ("fit_fusion_net.seq_len", 2, "must be >= nets.conv_lstm.pool (got 2)"),
        ("fit_fusion_net.nets.conv_lstm.kernels", [1, 4], "kernel sizes must be odd"),
        ("fit_fusion_net.nets.conv_lstm.lstm_hidden", 0, "must be >= 1 (got 0)"),
        ("get_pretrained.models", ["nope"], "unknown checkpoints ['nope']"),
        ("pretrain_faces.precision", "fp16", "'fp32' or 'bf16' (got 'fp16')"),
        ("pretrain_faces.label_smoothing", 1.0, "must be < 1 (got 1.0)"),
        ("pretrain_faces.rotate_deg", -5.0, "must be >= 0 (got -5.0)"),
    ],
)
def test_invalid_values_name_the_param(tmp_path, dotted, value, problem):
    message = _error(tmp_path, _with(dotted, value))
    assert f": {dotted}" in message and problem in message, message


def test_fusion_nets_are_named_and_reach_fuse_and_evaluate(tmp_path):
    message = _error(tmp_path, _with("fit_fusion_net.nets", {"transformer": {}}))
    assert "fit_fusion_net.nets" in message and "conv_lstm" in message, message
    for stage in ("fuse", "evaluate"):
        assert list(load_params(stage, ROOT / "params.yaml").fit_nets) == [
            "conv_lstm",
            "attention_fbp",
        ]
    data = _with("fit_fusion_net.nets", {})  # no fusion network (e.g. audio-only data)
    data["fit_fusion_net"]["faces"] = "faces/not_made"  # then its inputs are not checked
    assert load_params("fuse", _write(tmp_path, data)).fit_nets == {}


def test_the_message_format(tmp_path):
    message = _error(tmp_path, _with("fit.kelm.C", -1), stage="fit.kelm")
    assert message == f"{tmp_path / 'params.yaml'}: fit.kelm.C: must be > 0 (got -1)"


def test_a_bad_value_stops_every_stage(tmp_path):
    path = _write(tmp_path, _with("fit.kelm.C", -1))
    for stage in STAGES:
        with pytest.raises(ParamsError, match=r"fit\.kelm\.C: must be > 0"):
            load_params(stage, path)


def test_several_errors_on_one_line(tmp_path):
    data = _with("fit.kelm.C", -1)
    data["fit"]["svm"]["C"] = -1
    message = _error(tmp_path, data)
    assert "fit.svm.C: must be > 0 (got -1); fit.kelm.C: must be > 0 (got -1)" in message


def test_misspelled_key_names_the_key_and_suggests(tmp_path):
    data = _real()
    data["make_demo"]["n_video"] = data["make_demo"].pop("n_videos")
    message = _error(tmp_path, data, stage="make_demo")
    assert "make_demo.n_video: unknown key (did you mean 'n_videos'?)" in message
    assert "make_demo.n_videos: missing key" in message


@pytest.mark.parametrize(
    "section,stray,right",
    [
        ("window_stats", "window_sz", "window_s"),  # window_stats reads only some of its keys
        ("base", "sed", "seed"),  # base keys are looked up one by one
        ("fit.kelm", "gama", "gamma"),
        ("embed_audio.backbones.logmel", "wieghts", "weights"),
    ],
)
def test_stray_key_beside_the_right_one(tmp_path, section, stray, right):
    data = _with(f"{section}.{stray}", 1)
    message = _error(tmp_path, data, stage="detect_faces")  # a stage that reads neither
    assert f"{section}.{stray}: unknown key (did you mean '{right}'?)" in message


def test_unknown_section_and_unknown_backbone(tmp_path):
    data = _real()
    data["windowstats"] = {"window_s": 4}
    assert "windowstats: unknown key (did you mean 'window_stats'?)" in _error(tmp_path, data)
    data = _with("embed_faces.backbones", {"arcface": {"weights": None}})
    assert "embed_faces.backbones.arcface: unknown name (known: 'fer_xception'" in _error(
        tmp_path, data
    )
    data = _with("embed_faces.backbones", {"fer_xception": {"weights": None, "enhance": "max"}})
    assert "embed_faces.backbones.fer_xception.enhance:" in _error(tmp_path, data)
    data = _with("embed_faces.backbones", {"fer_xception": {"weights": None}})
    assert "embed_faces.backbones.fer_xception.enhance:" in _error(tmp_path, data)


def test_missing_key_section_and_base_key(tmp_path):
    data = _real()
    del data["make_demo"]["gap_prob"]
    assert "make_demo.gap_prob: missing key" in _error(tmp_path, data)
    data = _real()
    del data["get_pretrained"]
    assert "get_pretrained: missing section" in _error(tmp_path, data, stage="make_demo")
    data = _real()
    del data["base"]["seed"]
    assert "base.seed: missing key" in _error(tmp_path, data, stage="make_demo")


def test_stage_section_cannot_shadow_base(tmp_path):
    message = _error(tmp_path, _with("make_demo.seed", 1), stage="make_demo")
    assert "make_demo.seed: unknown key (base.seed is shared: set it in base only)" in message


def test_csv_adapter_needs_its_table(tmp_path):
    data = _with("build_manifest.adapter", "csv")
    assert "build_manifest.csv_file: required for the csv adapter" in _error(tmp_path, data)


def test_thinning_keys_must_be_class_names(tmp_path):
    data = _with("finetune_faces.thinning", {"neutral": 10, "surprise": 2})
    message = _error(tmp_path, data)
    assert "finetune_faces.thinning: keys ['surprise'] not in base.classes" in message


def test_thinning_is_case_insensitive_and_absent_classes_keep_every_frame(tmp_path):
    data = _with("finetune_faces.thinning", {"Neutral": 10, "anger": 2})
    data["base"]["classes"] = ["neutral", "anger", "fear"]
    cfg = load_params("finetune_faces", _write(tmp_path, data))
    assert cfg.train_config().thinning == (10, 2, 1)


def test_unreadable_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params("make_demo", tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("make_demo", bad)
    with pytest.raises(ParamsError, match="unknown stage"):
        load_params("fit.knn", ROOT / "params.yaml")


def test_a_fusion_net_typo_is_reported_against_that_net_only(tmp_path):
    """Each net's entry is checked against its own keys: one message, the full path."""
    data = _with("fit_fusion_net.nets.attention_fbp.fusion", "sum")
    message = _error(tmp_path, data)
    assert "fit_fusion_net.nets.attention_fbp.fusion: must be" in message, message
    assert "conv_lstm" not in message and "unknown key" not in message, message


def test_out_of_fold_settings_reach_the_fit_stages_and_are_checked(tmp_path):
    data = _with("fit.oof_folds", 4)
    data["fuse"]["cv_group"] = "speaker"
    for stage in ("fit.svm", "fit.kelm", "fit.lstm", "fit_raw_audio"):
        cfg = load_params(stage, _write(tmp_path, data))
        assert (cfg.oof_folds, cfg.oof_group) == (4, "speaker")
    assert "fit.oof_folds: must be 0 (off) or at least 2" in _error(
        tmp_path, _with("fit.oof_folds", 1)
    )


def test_raw_audio_network_names_agree_everywhere():
    """The names of fit_raw_audio.nets: the params schema, the model registry, the scores
    module (fuse/evaluate) and predict, which must not import torch to know them."""
    from typing import get_args

    from pipeline import predict, scores
    from pipeline.models.raw_audio import RAW_AUDIO_NETS
    from pipeline.params import RawAudioNetName

    names = set(get_args(RawAudioNetName))
    assert names == set(RAW_AUDIO_NETS) == set(scores.RAW_AUDIO_MODELS) == set(predict.RAW_AUDIO)
    assert (
        set(yaml.safe_load((ROOT / "params.yaml").read_text())["fit_raw_audio"]["nets"]) == names
    )
