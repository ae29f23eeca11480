"""Stage `build_manifest` through its CLI: outputs, report, and non-zero exits."""

import gzip
import json
from pathlib import Path

import pytest
import yaml

from pipeline.data.manifest import read_manifest
from stages.build_manifest import main

ROOT = Path(__file__).resolve().parents[2]


def _params(tmp_path, **overrides):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["build_manifest"].update(overrides)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _dataset(tmp_path, make_video, splits):
    root = tmp_path / "ds"
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness"
    for i, split_dir in enumerate(splits):
        make_video(root / "videos" / f"v{i}.mp4", n_frames=10, audio=i != 0)
        lf = root / "annotations" / "EXPR_Set" / split_dir / f"v{i}.txt"
        lf.parent.mkdir(parents=True, exist_ok=True)
        lf.write_text(header + "\n" + "\n".join(["2"] * 10) + "\n")
    return root


def test_writes_manifest_and_report(tmp_path, make_video):
    root = _dataset(tmp_path, make_video, ["Train_Set", "Validation_Set", "Test_Set"])
    dst, rep = tmp_path / "out" / "manifest.csv", tmp_path / "out" / "report.json"
    images = tmp_path / "out" / "images"
    main(
        [
            "--src",
            str(root),
            "--dst",
            str(dst),
            "--report",
            str(rep),
            "--images",
            str(images),
            "--params",
            str(_params(tmp_path, adapter="affwild2")),
        ]
    )
    lines = dst.read_text().splitlines()
    assert len(lines) == 4 and lines[1].startswith("v0,")
    report = json.loads(rep.read_text())
    assert report["errors"] == [] and "no audio track" in report["warnings"][0]["problem"]
    assert images.is_dir() and not list(images.iterdir())  # the out DVC declares, empty


def test_fer2013_table_becomes_image_rows(tmp_path):
    """The stage writes one PNG per usable row into --images; the manifest points at them."""
    root = tmp_path / "fer"
    root.mkdir()
    pixels = " ".join(["128"] * 48 * 48)
    usages = ["Training", "Training", "PublicTest", "PrivateTest", "Training", "PublicTest"]
    lines = [f"{k % 7},{pixels},{u}" for k, u in enumerate(usages)]
    with gzip.open(root / "fer2013.csv.gz", "wt") as fh:
        fh.write("emotion,pixels,Usage\n" + "\n".join(lines) + "\n")
    out = tmp_path / "out"
    main(
        [
            "--src",
            str(root),
            "--dst",
            str(out / "manifest.csv"),
            "--report",
            str(out / "report.json"),
            "--images",
            str(out / "images"),
            "--params",
            str(_params(tmp_path, adapter="fer2013")),
        ]
    )
    rows = read_manifest(out / "manifest.csv")  # params.yaml's classes lack surprise (code 5)
    assert [(r.video_id, r.split, r.clip_label, r.modality) for r in rows] == [
        ("fer2013_00001", "train", "anger", "image"),
        ("fer2013_00002", "train", "disgust", "image"),
        ("fer2013_00003", "dev", "fear", "image"),
        ("fer2013_00004", "test", "happiness", "image"),
        ("fer2013_00005", "train", "sadness", "image"),
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        f"{r.video_id}.png" for r in rows
    ]
    assert all(r.media_path == str(out / "images" / f"{r.video_id}.png") for r in rows)
    problems = [w["problem"] for w in json.loads((out / "report.json").read_text())["warnings"]]
    assert "emotion 'surprise' is not in base.classes (1 row)" in problems


def test_strict_turns_warnings_into_a_failure(tmp_path, make_video):
    root = _dataset(tmp_path, make_video, ["Train_Set", "Validation_Set", "Test_Set"])
    dst, rep = tmp_path / "manifest.csv", tmp_path / "report.json"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--src",
                str(root),
                "--dst",
                str(dst),
                "--report",
                str(rep),
                "--params",
                str(_params(tmp_path, adapter="affwild2", strict=True)),
            ]
        )
    assert exc.value.code == 1 and not dst.exists()
    assert json.loads(rep.read_text())["warnings"]  # the report says why


def test_empty_dev_split_exits_non_zero_without_manifest(tmp_path, make_video, capfd):
    root = _dataset(tmp_path, make_video, ["Train_Set", "Test_Set"])
    dst = tmp_path / "manifest.csv"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "--src",
                str(root),
                "--dst",
                str(dst),
                "--report",
                str(tmp_path / "r.json"),
                "--params",
                str(_params(tmp_path, adapter="affwild2")),
            ]
        )
    assert exc.value.code == 1 and not dst.exists()
    assert "split 'dev' is empty" in capfd.readouterr().err
