"""Dataset settings files: their overrides are valid params and become the right `-S` options."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from pipeline.params import load_file

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
_spec = importlib.util.spec_from_file_location("configs_run", ROOT / "configs" / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def _apply(params: dict, settings: dict, prefix: str = "") -> None:
    """What the `-S` options do to params.yaml (merge, whole values for REPLACE keys)."""
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in run.REPLACE:
            _apply(params.setdefault(key, {}), value, f"{name}.")
        else:
            params[key] = value


def test_overrides_flatten_merge_and_replace():
    got = run.overrides(
        {
            "fit": {"kelm": {"C": 3}, "features": ["a", "b"]},
            "window_stats": {"features": {"x": "audio/x"}},
            "build_manifest": {"root": "../d", "dev_speakers": ["03"], "csv_file": None},
        }
    )
    assert got == [
        "fit.kelm.C=3",
        'fit.features=["a", "b"]',
        "~window_stats.features",
        '+window_stats.features={x: "audio/x"}',
        'build_manifest.root="../d"',
        'build_manifest.dev_speakers=["03"]',
        "build_manifest.csv_file=null",
    ]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_gives_valid_params(path, tmp_path):
    settings = yaml.safe_load(path.read_text())
    settings.pop("targets", None)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    _apply(params, settings)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load_file(tmp_path / "params.yaml")  # raises ParamsError naming the key if not


def test_command_puts_targets_last_and_passes_extra_arguments(tmp_path):
    cmd = run.command(ROOT / "configs" / "emodb.yaml", ["-S", "build_manifest.root=/x"])
    assert cmd[2:5] == ["dvc", "exp", "run"]  # no targets: the whole pipeline
    assert cmd[-2:] == ["-S", "build_manifest.root=/x"]  # after the file's: it wins
    (tmp_path / "some.yaml").write_text("fit: {features: [mfcc]}\ntargets: [fuse, evaluate]\n")
    cmd = run.command(tmp_path / "some.yaml", ["--queue"])
    assert cmd[-5:] == ["-S", 'fit.features=["mfcc"]', "--queue", "fuse", "evaluate"]
