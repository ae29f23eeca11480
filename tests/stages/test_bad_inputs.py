"""Bad-input matrix: stage `build_manifest` (csv adapter) on one bad row beside good videos.

Every case runs the real entry point on a dataset in tmp_path: three good clips (train, dev,
test) plus the case's row on table line 5. A case that stops must exit with status 1, write
no manifest and name the table line (or file) in the log and in manifest_report.json. A case
that skips or keeps must return normally, name the file in the report and keep every good
clip. The README section "What `build_manifest` does with problem inputs" lists the same.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from pipeline.data.manifest import read_manifest
from stages.build_manifest import main

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness"
GOOD = [
    ("good_a.mp4", "train", "anger"),
    ("good_b.mp4", "dev", "fear"),
    ("good_c.mp4", "test", "sadness"),
]
GOOD_IDS = ["good_a", "good_b", "good_c"]
COLUMNS = ("media", "split", "label", "label_file", "video_id")


@dataclass
class Outcome:
    code: int  # exit status: 0 = returned normally
    ids: list[str]  # video ids in the manifest ([] when none was written)
    rows: dict  # manifest rows by id
    report: dict  # manifest_report.json
    log: str  # what the stage logged (stderr)
    table: Path

    def entries(self, kind: str) -> str:
        """The report's ``errors`` or ``warnings`` as ``file: problem (action)`` lines."""
        lines = []
        for e in self.report[kind]:
            action = f" ({e['action']})" if "action" in e else ""
            lines.append(f"{e['file']}: {e['problem']}{action}")
        return "\n".join(lines)

    def warned(self, text: str) -> bool:
        return text in self.entries("warnings")


def _labels(path: Path, n: int, header: str = HEADER, value: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join([str(value)] * n) + "\n")
    return path


@pytest.fixture
def run(tmp_path, make_video, capfd):
    """``run(rows, good=GOOD, **build_manifest params) -> Outcome`` on ``tmp_path/ds``."""
    ds = tmp_path / "ds"
    for media, _, _ in GOOD:
        make_video(ds / media, n_frames=10, fps=25.0)

    def _run(rows: list[tuple], good: list[tuple] = GOOD, **overrides) -> Outcome:
        table = ds / "table.csv"
        lines = [",".join(COLUMNS)] + [f"{m},{s},{lab},," for m, s, lab in good]
        lines += [",".join(r + ("",) * (len(COLUMNS) - len(r))) for r in rows]
        table.write_text("\n".join(lines) + "\n")
        data = yaml.safe_load((ROOT / "params.yaml").read_text())
        data["base"]["n_jobs"] = 1
        data["build_manifest"].update(
            adapter="csv", root=str(ds), csv_file="table.csv", **overrides
        )
        params = tmp_path / "params.yaml"
        params.write_text(yaml.safe_dump(data))
        dst, rep = tmp_path / "out" / "manifest.csv", tmp_path / "out" / "manifest_report.json"
        dst.unlink(missing_ok=True)
        code = 0
        try:
            main(
                [
                    "--src",
                    str(ds),
                    "--dst",
                    str(dst),
                    "--report",
                    str(rep),
                    "--params",
                    str(params),
                ]
            )
        except SystemExit as exc:
            code = exc.code
        rows_by_id = {r.video_id: r for r in read_manifest(dst)} if dst.exists() else {}
        return Outcome(
            code,
            sorted(rows_by_id),
            rows_by_id,
            json.loads(rep.read_text()),
            capfd.readouterr().err,
            table,
        )

    _run.ds = ds
    return _run


def _stops(out: Outcome, *expected: str) -> None:
    assert out.code == 1 and out.ids == []
    for text in expected:
        assert text in out.log, out.log
        assert text.split(": ", 1)[-1] in out.entries("errors") + out.entries("warnings")


def _kept(out: Outcome, ids: list[str] = GOOD_IDS) -> None:
    assert out.code == 0 and out.ids == sorted(ids), out.log
    assert out.report["errors"] == []


# ------------------------------------------------------------------ stops: video ids


@pytest.mark.parametrize(
    "vid,why",
    [
        ("../../escaped", "holds '/'"),  # extract_audio wrote outside its folder
        ("sub/dir", "holds '/'"),  # nested folders and HDF5 groups, TypeError later
        ("with space", "holds ' '"),
        (".hidden", "starts with '.'"),
    ],
)
def test_unsafe_video_id_stops(run, vid, why):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "anger", "", vid)])
    _stops(out, f"table.csv line 5: unsafe video id {vid!r}: {why}")
    assert out.report["errors"][0]["file"] == str(out.table)
    assert not (run.ds.parent / "escaped").exists()


def test_duplicate_video_id_stops(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "anger", "", "good_b")])
    _stops(
        out,
        f"table.csv line 5: duplicate video id 'good_b' (first: {run.ds / 'table.csv'} line 3)",
    )


@pytest.mark.parametrize("vid,first", [("GOOD_A", "good_a"), ("Good_a", "good_a")])
def test_video_ids_equal_ignoring_case_stop(run, vid, first):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "anger", "", vid)])
    _stops(out, f"table.csv line 5: video id {vid!r} collides with {first!r}")


# ------------------------------------------------------------------ stops: paths outside root


@pytest.mark.parametrize("column", ["media", "label_file"])
@pytest.mark.parametrize("path", ["../../etc/passwd", "../outside.mp4", "/etc/passwd"])
def test_path_outside_root_stops(run, make_video, column, path):
    make_video(run.ds.parent / "outside.mp4", n_frames=10)
    row = ("x.mp4", "train", "", path) if column == "label_file" else (path, "train", "anger")
    if column == "label_file":
        shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([row])
    _stops(out, f"table.csv: line 5: {column} path {path!r} is outside root")


def test_path_through_symlinked_folder_stops(run, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(run.ds / "good_a.mp4", tmp_path / "elsewhere" / "x.mp4")
    (run.ds / "linked").symlink_to(tmp_path / "elsewhere")
    out = run([("linked/x.mp4", "train", "anger")])
    _stops(
        out,
        "table.csv: line 5: media path 'linked/x.mp4' goes through the symlinked folder linked",
    )


# ------------------------------------------------------------------ stops: README rows


def test_label_header_class_outside_classes_stops(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    lf = _labels(run.ds / "labels" / "x.txt", 10, header=HEADER + ",Surprise")
    out = run([("x.mp4", "train", "", "labels/x.txt")])
    _stops(out, f"{lf}: header classes ['surprise'] are not in base.classes")


def test_strict_stops_on_any_warning(run, make_video):
    make_video(run.ds / "silent.mp4", n_frames=10, audio=False)
    out = run([("silent.mp4", "train", "anger")], strict=True)
    _stops(out, "strict: 1 warnings")
    assert out.warned("silent.mp4") and "no audio track" in out.entries("warnings")


def test_empty_dev_split_stops(run):
    out = run([], good=[GOOD[0], GOOD[2]])
    _stops(out, "split 'dev' is empty")


def test_no_usable_video_stops(run):
    out = run([("missing.mp4", "dev", "fear")], good=[("gone.mp4", "train", "anger")])
    _stops(out, "no usable video in the dataset")
    assert out.warned("gone.mp4: file not found")


# ------------------------------------------------------------------ kept or skipped


def test_audio_only_file_is_kept_as_modality_audio(run):
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    sf.write(run.ds / "speech.wav", tone, 16000)
    out = run([("speech.wav", "train", "anger")])
    _kept(out, GOOD_IDS + ["speech"])
    assert out.rows["speech"].modality == "audio" and not out.rows["speech"].has_video
    assert out.rows["good_a"].modality == "audio_video"
    assert out.warned(f"{run.ds / 'speech.wav'}: audio only: no video stream (modality audio)")
    assert out.warned("kept: face features give it no windows")
    assert out.report["modalities"] == {"audio": 1, "audio_video": 3}


def test_still_image_is_kept_as_modality_image(run):
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(run.ds / "photo.png")
    out = run([("photo.png", "train", "anger")])
    _kept(out, GOOD_IDS + ["photo"])
    assert out.rows["photo"].modality == "image" and out.rows["photo"].n_frames == 1
    assert out.warned(f"{run.ds / 'photo.png'}: still image (modality image)")


def test_truncated_faststart_mp4_is_kept_with_its_decoded_duration(run, make_video):
    path = make_video(run.ds / "cut.mp4", n_frames=100, fps=25.0, faststart=True)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.45)])
    out = run([("cut.mp4", "train", "anger")])
    _kept(out, GOOD_IDS + ["cut"])
    row = out.rows["cut"]
    assert row.n_frames < 60 and row.duration_s == pytest.approx(row.n_frames / 25.0, abs=0.05)
    assert (
        f"{path}: partly decodable: {row.n_frames} of ~100 frames "
        f"({row.n_frames / 25:.2f} s of 4.00 s)"
    ) in out.entries("warnings")
    assert out.warned("(kept: decoded part used)")


def test_truncated_plain_mp4_is_skipped(run, make_video):
    path = make_video(run.ds / "cut.mp4", n_frames=100, fps=25.0)  # index at the end: lost
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    out = run([("cut.mp4", "train", "anger")])
    _kept(out)
    assert out.warned(f"{path}: cannot be opened as media")


def test_rotated_video_is_kept_with_its_displayed_size(run, make_video):
    # stored sideways (48 x 64), displayed 64 x 48
    make_video(run.ds / "phone.mp4", n_frames=10, size=(48, 64), rotation_deg=-90)
    out = run([("phone.mp4", "train", "anger")])
    _kept(out, GOOD_IDS + ["phone"])
    assert (out.rows["phone"].width, out.rows["phone"].height) == (64, 48)


def test_label_file_with_bom_and_crlf_is_read(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    lf = run.ds / "labels" / "x.txt"
    lf.parent.mkdir()
    lf.write_bytes(("\ufeff" + HEADER + "\r\n" + "2\r\n" * 10).encode())
    out = run([("x.mp4", "train", "", "labels/x.txt")])
    _kept(out, GOOD_IDS + ["x"])
    assert out.rows["x"].label_frames == 10 and out.report["warnings"] == []


def test_label_file_with_a_blank_line_inside_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    lf = run.ds / "labels" / "x.txt"
    lf.parent.mkdir()
    lf.write_text(HEADER + "\n1\n1\n\n1\n1\n1\n1\n1\n1\n1\n\n")  # line 4; trailing blank is fine
    out = run([("x.mp4", "train", "", "labels/x.txt")])
    _kept(out)
    assert out.warned(f"{lf}: line 4: blank line inside the file")


def test_missing_media_is_skipped(run):
    out = run([("nowhere.mp4", "train", "anger")])
    _kept(out)
    assert out.warned(f"{run.ds / 'nowhere.mp4'}: file not found (skipped)")


def test_corrupt_media_is_skipped(run):
    (run.ds / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    out = run([("broken.mp4", "train", "anger")])
    _kept(out)
    assert out.warned(f"{run.ds / 'broken.mp4'}: cannot be opened as media")


def test_missing_label_file_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "", "labels/none.txt")])
    _kept(out)
    assert out.warned(f"{run.ds / 'labels' / 'none.txt'}: label file not found (skipped)")


def test_label_length_mismatch_beyond_tolerance_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    lf = _labels(run.ds / "labels" / "x.txt", 75)  # 10 frames at 25 fps: +2.60 s
    out = run([("x.mp4", "train", "", "labels/x.txt")])
    _kept(out)
    assert out.warned(f"{lf}: 75 label lines for 10 video frames (+2.60 s, tolerance 1.0 s)")


def test_label_shorter_within_tolerance_is_kept(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    lf = _labels(run.ds / "labels" / "x.txt", 8)
    out = run([("x.mp4", "train", "", "labels/x.txt")])
    _kept(out, GOOD_IDS + ["x"])
    assert out.warned(f"{lf}: shorter than its video (8 vs 10 frames)")


def test_clip_label_outside_classes_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "surprise")])
    _kept(out)
    assert out.warned(f"{run.ds / 'x.mp4'}: clip label 'surprise' is not in base.classes")


def test_video_without_label_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "train", "")])
    _kept(out)
    assert out.warned(f"{run.ds / 'x.mp4'}: no label (skipped)")


def test_video_without_audio_is_kept(run, make_video):
    make_video(run.ds / "silent.mp4", n_frames=10, audio=False)
    out = run([("silent.mp4", "train", "anger")])
    _kept(out, GOOD_IDS + ["silent"])
    assert out.rows["silent"].modality == "video" and not out.rows["silent"].has_audio
    assert out.warned(f"{run.ds / 'silent.mp4'}: no audio track (modality video)")


def test_unknown_split_is_skipped(run):
    shutil.copy(run.ds / "good_a.mp4", run.ds / "x.mp4")
    out = run([("x.mp4", "holdout", "anger")])
    _kept(out)
    assert out.warned(f"{out.table}: line 5: split 'holdout' is not one of")


def test_empty_test_split_is_kept_with_a_warning(run):
    out = run([], good=GOOD[:2])
    _kept(out, GOOD_IDS[:2])
    assert out.warned("(dataset): split 'test' is empty (kept: evaluation reports dev only)")
