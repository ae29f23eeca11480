"""A bad params file stops a stage before it reads any input: exit 1 and one logged line
naming the param (the inputs given here do not exist, so reaching them would fail otherwise)."""

import importlib
import logging
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bad_params(tmp_path, dotted, value):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    *parents, key = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    path = tmp_path / "bad_params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "stage,argv,dotted,value,problem",
    [
        (
            "detect_faces",
            [
                "--manifest",
                "in/manifest.csv",
                "--dst",
                "out/faces",
                "--report",
                "out/faces_report.json",
            ],
            "detect_faces.min_face_px",
            -5,
            "must be >= 1 (got -5)",
        ),
        (
            "extract_audio",
            [
                "--manifest",
                "in/manifest.csv",
                "--dst",
                "out/audio",
                "--report",
                "out/audio_report.json",
            ],
            "extract_audio.rate_hz",
            0,
            "must be >= 8000 (got 0)",
        ),
        (
            "build_manifest",
            [
                "--src",
                "in/demo",
                "--dst",
                "out/manifest.csv",
                "--report",
                "out/manifest_report.json",
            ],
            "base.classes",
            ["neutral"],
            "must name at least two classes",
        ),
        (
            "fit",
            [
                "--model",
                "kelm",
                "--feature",
                "fer",
                "--windows",
                "in/fer.h5",
                "--dst",
                "out/kelm_fer",
            ],
            "fit.kelm.C",
            -1,
            "must be > 0 (got -1)",
        ),
        (
            "window_stats",
            ["--embeddings", "in/fer.h5", "--labels", "in/labels.h5", "--dst", "out/fer.h5"],
            "window_stats.window_sz",
            4.0,
            "unknown key (did you mean 'window_s'?)",
        ),
    ],
)
def test_stage_refuses_bad_params_first(
    tmp_path, monkeypatch, caplog, stage, argv, dotted, value, problem
):
    bad = _bad_params(tmp_path, dotted, value)
    monkeypatch.chdir(tmp_path)  # relative in/ and out/ paths: nothing there
    main = importlib.import_module(f"stages.{stage}").main
    # stage_cli's logging.basicConfig(force=True) would drop caplog's handler; keep it
    monkeypatch.setattr("pipeline.cli.setup_logging", lambda: None)
    with caplog.at_level(logging.ERROR, logger="pipeline"), pytest.raises(SystemExit) as exc:
        main([*argv, "--params", str(bad)])
    assert exc.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert f"{bad}: {dotted}: {problem}" in errors[0], errors[0]
    assert not (tmp_path / "out").exists()  # nothing written
