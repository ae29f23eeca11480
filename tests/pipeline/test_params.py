"""Typed params: the real params.yaml loads for every stage; mistakes fail with clear messages."""
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


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_loads_from_the_real_params(stage):
    cfg = load_params(stage, ROOT / "params.yaml")
    _, base_keys = STAGES[stage]
    base = load_base(ROOT / "params.yaml")
    for key in base_keys:  # base keys arrive with base's values
        assert getattr(cfg, key) == getattr(base, key)


def test_lists_become_tuples_and_ints_become_floats(tmp_path):
    cfg = load_params("make_demo", ROOT / "params.yaml")
    assert isinstance(cfg.duration_s, tuple) and all(isinstance(v, float) for v in cfg.duration_s)
    assert isinstance(load_params("build_manifest", ROOT / "params.yaml").classes, tuple)


def test_misspelled_key_names_the_key_and_suggests(tmp_path):
    data = _real()
    data["make_demo"]["n_video"] = data["make_demo"].pop("n_videos")
    with pytest.raises(ParamsError, match=r"make_demo\.n_video: unknown key \(did you mean 'n_videos'\?\)"):
        load_params("make_demo", _write(tmp_path, data))


def test_missing_key_is_named(tmp_path):
    data = _real()
    del data["make_demo"]["gap_prob"]
    with pytest.raises(ParamsError, match=r"make_demo\.gap_prob: missing key"):
        load_params("make_demo", _write(tmp_path, data))


def test_missing_section_and_base_key(tmp_path):
    data = _real()
    del data["get_pretrained"]
    with pytest.raises(ParamsError, match="section 'get_pretrained' is missing"):
        load_params("get_pretrained", _write(tmp_path, data))
    data = _real()
    del data["base"]["seed"]
    with pytest.raises(ParamsError, match=r"base\.seed is missing"):
        load_params("make_demo", _write(tmp_path, data))


@pytest.mark.parametrize("section,key,value,message", [
    ("base", "task", "valence", r"'valence' is not one of \['expr', 'va'\]"),
    ("base", "seed", "13", "expected an integer"),
    ("make_demo", "n_videos", 2.5, "expected an integer"),
    ("make_demo", "duration_s", [30, 20], "low <= high"),
    ("make_demo", "split_counts", {"train": 1, "dev": 1, "test": 1}, "add up to n_videos"),
    ("build_manifest", "strict", "yes", "expected true/false"),
    ("build_manifest", "adapter", "affwild", r"not one of \['demo', 'affwild2', 'crema_d', 'csv'\]"),
])
def test_invalid_values_are_rejected(tmp_path, section, key, value, message):
    data = _real()
    data[section][key] = value
    stage = "build_manifest" if section in ("base", "build_manifest") else section
    with pytest.raises(ParamsError, match=message):
        load_params(stage, _write(tmp_path, data))


def test_stage_section_cannot_shadow_base(tmp_path):
    data = _real()
    data["make_demo"]["seed"] = 1
    with pytest.raises(ParamsError, match="shadows base.seed"):
        load_params("make_demo", _write(tmp_path, data))


def test_unreadable_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params("make_demo", tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("make_demo", bad)
