"""Adapters of RAVDESS, eNTERFACE'05, AFEW and FER-2013: names and folders -> labels,
speakers and splits; bad names reported, not fatal; labels outside base.classes dropped and
counted. Each layout is built here; only build_manifest decodes media, so the other tests
use empty files."""

import csv
import gzip
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from pipeline.data import adapters as ad
from pipeline.data import manifest as mf
from pipeline.errors import DataError, PipelineError

ALL = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _warnings(rep: mf.Report) -> dict[str, str]:
    """``file name: problem`` of every warning (one per file in these layouts)."""
    return {Path(w["file"]).name: w["problem"] for w in rep.warnings}


def _got(items: list[mf.Item]) -> dict[str, tuple[str, str, str]]:
    return {i.video_id: (i.split, i.speaker, i.clip_label) for i in items}


# --------------------------------------------------------------------------- RAVDESS


def test_ravdess_names_give_emotion_actor_and_split(tmp_path):
    _touch(
        tmp_path,
        "Actor_01/01-01-03-01-01-01-01.mp4",  # happy, audio-video
        "Actor_01/02-01-03-01-01-01-01.mp4",  # the same recording, video only
        "Actor_01/03-01-03-01-01-01-01.wav",  # ... and audio only
        "Actor_01/03-01-02-01-01-01-01.wav",  # calm: not in the classes below
        "Actor_01/03-01-01-01-01-02-01.wav",  # neutral, statement 2
        "Actor_02/03-02-05-02-02-02-02.wav",  # song, angry, strong
        "Actor_02/02-01-04-01-01-01-02.mp4",  # sad, video only (no 01 of it)
        "Actor_03/01-01-06-01-01-01-03.mp4",  # fearful
        "Actor_03/01-01-08-02-01-01-03.mp4",  # surprised
        "Actor_04/01-01-07-01-01-01-04.mp4",  # disgust
        # bad names
        "Actor_01/01-01-03-01-01-01-02.mp4",  # actor 02 in Actor_01
        "Actor_02/01-01-09-01-01-01-02.mp4",  # emotion 09
        "Actor_02/04-01-03-01-01-01-02.mp4",  # modality 04
        "Actor_03/01-01-03.mp4",  # three fields
        "Actor_03/notes.txt",
        "Actor_04/.DS_Store",  # hidden: ignored
    )
    rep = mf.Report()
    classes = tuple(c for c in ALL if c != "neutral")  # no neutral, no calm
    items = ad.ravdess_items(tmp_path, classes, ("02",), ("03", "04"), rep)
    assert _got(items) == {
        "01-01-03-01-01-01-01": ("train", "01", "happiness"),
        "02-01-04-01-01-01-02": ("dev", "02", "sadness"),
        "03-02-05-02-02-02-02": ("dev", "02", "anger"),
        "01-01-06-01-01-01-03": ("test", "03", "fear"),
        "01-01-08-02-01-01-03": ("test", "03", "surprise"),
        "01-01-07-01-01-01-04": ("test", "04", "disgust"),
    }
    assert [i.media_path for i in items] == sorted(i.media_path for i in items)
    problems = _warnings(rep)
    assert problems["03-01-02-01-01-01-01.wav"] == "emotion 'calm' is not in base.classes"
    assert problems["03-01-01-01-01-02-01.wav"] == "emotion 'neutral' is not in base.classes"
    assert (
        "actor 02 of the name is not its folder Actor_01" in problems["01-01-03-01-01-01-02.mp4"]
    )
    assert "emotion code 09" in problems["01-01-09-01-01-01-02.mp4"]
    assert "modality code 04" in problems["04-01-03-01-01-01-02.mp4"]
    assert "seven two-digit fields" in problems["01-01-03.mp4"]
    assert "not an .mp4 or .wav file" in problems["notes.txt"]
    assert ".DS_Store" not in problems
    assert "2 files repeat a recording in another modality" in problems[tmp_path.name]
    assert len(rep.warnings) == 8


def test_ravdess_every_emotion_code_and_calm_as_a_class(tmp_path):
    codes = [f"{k:02d}" for k in range(1, 9)]
    _touch(tmp_path, *[f"Actor_05/03-01-{c}-01-01-01-05.wav" for c in codes])
    rep = mf.Report()
    items = ad.ravdess_items(tmp_path, ALL + ("calm",), (), (), rep)
    assert [i.clip_label for i in items] == [
        "neutral",
        "calm",
        "happiness",
        "sadness",
        "anger",
        "fear",
        "disgust",
        "surprise",
    ]
    assert {(i.split, i.speaker) for i in items} == {("train", "05")} and not rep.warnings


def test_ravdess_refuses_an_empty_folder_and_overlapping_speakers(tmp_path):
    with pytest.raises(PipelineError, match="no RAVDESS files"):
        ad.ravdess_items(tmp_path, ALL, (), (), mf.Report())
    _touch(tmp_path, "Actor_01/03-01-01-01-01-01-01.wav")
    with pytest.raises(PipelineError, match=r"\['01'\] are in both"):
        ad.ravdess_items(tmp_path, ALL, ("01",), ("01",), mf.Report())


def test_ravdess_through_build_manifest(tmp_path, make_video):
    """Real tiny files: the audio-video clip wins over its video-only twin; a wav is audio."""
    for stem in ("01-01-03-01-01-01-01", "02-01-03-01-01-01-01"):
        make_video(tmp_path / "Actor_01" / f"{stem}.mp4", n_frames=5, audio=stem[:2] == "01")
    make_video(tmp_path / "Actor_02" / "01-01-05-01-01-01-02.mp4", n_frames=5)
    rate = 16000
    tone = (0.2 * np.sin(np.arange(rate // 2) / 5)).astype(np.float32)
    (tmp_path / "Actor_03").mkdir()
    sf.write(tmp_path / "Actor_03" / "03-01-04-01-01-01-03.wav", tone, rate)
    rep = mf.Report()
    items = ad.ravdess_items(tmp_path, ALL, ("02",), ("03",), rep)
    rows = mf.build_manifest(
        items, task="expr", classes=ALL, max_label_mismatch_s=1.0, n_jobs=1, report=rep
    )
    got = {r.video_id: (r.split, r.speaker, r.clip_label, r.modality) for r in rows}
    assert got == {
        "01-01-03-01-01-01-01": ("train", "01", "happiness", "audio_video"),
        "01-01-05-01-01-01-02": ("dev", "02", "anger", "audio_video"),
        "03-01-04-01-01-01-03": ("test", "03", "sadness", "audio"),
    }


# --------------------------------------------------------------------------- eNTERFACE'05


def test_enterface05_folders_give_emotion_subject_and_split(tmp_path):
    _touch(
        tmp_path,
        "subject 1/anger/sentence 1/s1_an_1.avi",
        "subject 1/disgust/sentence 2/s1_di_2.avi",  # disgust: not in the classes below
        "subject 1/fear/sentence 3/s1_fe_3.avi",
        "subject 6/happiness/s6_ha_1.avi",  # subject 6: no sentence folders
        "subject 6/sadness/s6_sa_4.avi",
        "subject 12/surprise/sentence 5/s12_su_5.avi",
        "subject_2/Happiness/sentence_4/s2_ha_4.AVI",  # underscores, capitals
        # bad entries
        "subject 1/anger/sentence 1/notes.txt",
        "subject 1/anger/sentence 2/bad name.avi",
        "subject 1/joy/sentence 1/s1_jo_1.avi",
        "subject 1/anger/take 1/s1_an_9.avi",
        "misc/readme.avi",
    )
    rep = mf.Report()
    classes = tuple(c for c in ALL if c != "disgust")
    items = ad.enterface05_items(tmp_path, classes, ("06",), ("12",), rep)
    assert _got(items) == {
        "s01_anger_1_s1_an_1": ("train", "01", "anger"),
        "s01_fear_3_s1_fe_3": ("train", "01", "fear"),
        "s02_happiness_4_s2_ha_4": ("train", "02", "happiness"),
        "s06_happiness_s6_ha_1": ("dev", "06", "happiness"),
        "s06_sadness_s6_sa_4": ("dev", "06", "sadness"),
        "s12_surprise_5_s12_su_5": ("test", "12", "surprise"),
    }
    by_id = {i.video_id: i for i in items}
    assert by_id["s06_sadness_s6_sa_4"].media_path == str(
        tmp_path / "subject 6" / "sadness" / "s6_sa_4.avi"
    )
    problems = _warnings(rep)
    assert problems["s1_di_2.avi"] == "emotion 'disgust' is not in base.classes"
    assert problems["notes.txt"] == "not an .avi file"
    assert "holds ' '" in problems["bad name.avi"]
    assert "not an emotion folder" in problems["joy"]
    assert problems["take 1"] == "not a 'sentence M' folder"
    assert problems["misc"] == "not a 'subject N' folder"
    assert len(rep.warnings) == 6


def test_enterface05_refuses_a_folder_without_subjects(tmp_path):
    _touch(tmp_path, "videos/a.avi")
    with pytest.raises(PipelineError, match="no eNTERFACE'05 folders"):
        ad.enterface05_items(tmp_path, ALL, (), (), mf.Report())
    with pytest.raises(PipelineError, match="no eNTERFACE'05 folders"):
        ad.enterface05_items(tmp_path / "absent", ALL, (), (), mf.Report())


# --------------------------------------------------------------------------- AFEW


def test_afew_folders_give_emotion_and_split(tmp_path):
    _touch(
        tmp_path,
        "Train_AFEW/Angry/000046280.avi",
        "Train_AFEW/Happy/000123.avi",
        "Train_AFEW/Neutral/000200.avi",  # neutral: not in the classes below
        "Train_AFEW/Sad/000300.avi",
        "Val_AFEW/Disgust/000400.avi",
        "Val_AFEW/Fear/000500.avi",
        "Val_AFEW/surprise/000600.avi",  # folder case does not matter
        # bad entries
        "Train_AFEW/Contempt/000700.avi",
        "Train_AFEW/Angry/readme.txt",
        "Val_AFEW/Fear/bad name.avi",
        "Test_AFEW/000800.avi",
    )
    rep = mf.Report()
    classes = tuple(c for c in ALL if c != "neutral")
    items = ad.afew_items(tmp_path, classes, rep)
    assert _got(items) == {
        "000046280": ("train", "000046280", "anger"),
        "000123": ("train", "000123", "happiness"),
        "000300": ("train", "000300", "sadness"),
        "000400": ("dev", "000400", "disgust"),
        "000500": ("dev", "000500", "fear"),
        "000600": ("dev", "000600", "surprise"),
    }
    problems = _warnings(rep)
    assert problems["000200.avi"] == "emotion 'neutral' is not in base.classes"
    assert "not an emotion folder" in problems["Contempt"]
    assert problems["readme.txt"] == "not an .avi file"
    assert "holds ' '" in problems["bad name.avi"]
    assert problems["Test_AFEW"] == "AFEW's test labels are not public"
    assert len(rep.warnings) == 5
    with pytest.raises(PipelineError, match="no AFEW folders"):
        ad.afew_items(tmp_path / "Train_AFEW", ALL, mf.Report())


# --------------------------------------------------------------------------- FER-2013


def _face(k: int) -> np.ndarray:
    """A distinct 48 x 48 uint8 face for row ``k``."""
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, (48, 48), dtype=np.uint8)


def _fer_table(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Write a FER-2013 table (``.gz``: gzip-compressed) of ``(emotion, pixels, Usage)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows(rows)
    return path


def _pixels(face: np.ndarray) -> str:
    return " ".join(str(v) for v in face.reshape(-1))


GOOD_FER = [  # (emotion code, Usage): every code, every Usage
    ("0", "Training"),
    ("1", "Training"),
    ("2", "PublicTest"),
    ("3", "PrivateTest"),
    ("4", "Training"),
    ("5", "PublicTest"),
    ("6", "PrivateTest"),
]


def _fer_rows() -> list[tuple[str, str, str]]:
    rows = [(code, _pixels(_face(k)), usage) for k, (code, usage) in enumerate(GOOD_FER)]
    rows += [
        ("7", _pixels(_face(7)), "Training"),  # line 9: emotion 7
        ("3", _pixels(_face(8)[:-1, :]) + " 0" * 47, "Training"),  # line 10: 2,303 pixels
        ("3", _pixels(_face(9)), "Other"),  # line 11: unknown Usage
        ("3", "x " + _pixels(_face(10))[2:], "Training"),  # line 12: not a number
        ("3", "300 " + _pixels(_face(11)).split(" ", 1)[1], "Training"),  # line 13
        ("1", _pixels(_face(12)), "PublicTest"),  # line 14: disgust again
    ]
    return rows


def test_fer2013_rows_become_png_faces_with_labels_and_splits(tmp_path):
    _fer_table(tmp_path / "ds" / "fer2013.csv", _fer_rows())
    rep = mf.Report()
    images = tmp_path / "images"
    classes = tuple(c for c in ALL if c != "disgust")
    items = ad.fer2013_items(tmp_path / "ds", classes, images, rep)
    assert _got(items) == {
        "fer2013_00001": ("train", "fer2013_00001", "anger"),
        "fer2013_00003": ("dev", "fer2013_00003", "fear"),
        "fer2013_00004": ("test", "fer2013_00004", "happiness"),
        "fer2013_00005": ("train", "fer2013_00005", "sadness"),
        "fer2013_00006": ("dev", "fer2013_00006", "surprise"),
        "fer2013_00007": ("test", "fer2013_00007", "neutral"),
    }
    for it in items:  # the PNG holds the row's pixels exactly
        k = int(it.video_id[-5:]) - 1
        assert it.media_path == str(images / f"{it.video_id}.png") and it.line == k + 2
        png = cv2.imread(it.media_path, cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and np.array_equal(png, _face(k))
    assert sorted(p.name for p in images.iterdir()) == [f"{i.video_id}.png" for i in items]
    problems = [w["problem"] for w in rep.warnings]
    assert problems == [
        "line 9: emotion '7' is not a code 0-6",
        "line 10: 2303 pixels, not 48 x 48 = 2304",
        "line 11: Usage 'Other' is not one of Training, PublicTest, PrivateTest",
        "line 12: pixels are not whole numbers",
        "line 13: pixel values outside 0-255",
        "emotion 'disgust' is not in base.classes (2 rows)",
    ]


def test_fer2013_gzip_table_gives_the_same_bytes_and_build_manifest_reads_the_pngs(tmp_path):
    _fer_table(tmp_path / "plain" / "fer2013.csv", _fer_rows())
    _fer_table(tmp_path / "gz" / "fer2013.csv.gz", _fer_rows())
    plain = ad.fer2013_items(tmp_path / "plain", ALL, tmp_path / "img_plain", mf.Report())
    rep = mf.Report()
    items = ad.fer2013_items(tmp_path / "gz", ALL, tmp_path / "img_gz", rep)
    assert [i.video_id for i in items] == [i.video_id for i in plain] and len(items) == 8
    for a, b in zip(plain, items, strict=True):
        assert Path(a.media_path).read_bytes() == Path(b.media_path).read_bytes()
    again = ad.fer2013_items(tmp_path / "gz", ALL, tmp_path / "img_gz", mf.Report())
    assert all(Path(i.media_path).exists() for i in again)  # rewritten in place
    rows = mf.build_manifest(
        items, task="expr", classes=ALL, max_label_mismatch_s=1.0, n_jobs=1, report=rep
    )
    assert [r.video_id for r in rows] == [i.video_id for i in items]
    assert {(r.modality, r.n_frames, r.width, r.height, r.has_audio) for r in rows} == {
        ("image", 1, 48, 48, False)
    }
    assert {r.split for r in rows} == {"train", "dev", "test"}


def test_fer2013_refuses_a_missing_bad_or_truncated_table(tmp_path):
    with pytest.raises(PipelineError, match="no FER-2013 table"):
        ad.fer2013_items(tmp_path, ALL, tmp_path / "images", mf.Report())
    (tmp_path / "fer2013.csv").write_text("label,pixels\n3,1 2 3\n")
    with pytest.raises(DataError, match=r"needs a header with the columns"):
        ad.fer2013_items(tmp_path, ALL, tmp_path / "images", mf.Report())
    (tmp_path / "fer2013.csv").unlink()
    table = _fer_table(tmp_path / "fer2013.csv.gz", _fer_rows())
    table.write_bytes(table.read_bytes()[:-200])
    with pytest.raises(DataError, match="cannot be read as a FER-2013 table"):
        ad.fer2013_items(tmp_path, ALL, tmp_path / "images", mf.Report())
    assert not (tmp_path / "images").exists()  # no partial folder


def test_fer2013_needs_an_images_folder_from_the_dispatch(tmp_path):
    class Cfg:
        classes = ALL

    with pytest.raises(PipelineError, match="--images"):
        ad.adapter_items("fer2013", tmp_path, Cfg, mf.Report())


def test_fer2013_on_the_real_table(fer2013_csv, tmp_path):
    """The shared copy: Training 28,709 and PublicTest 3,589 rows (PrivateTest held out).

    The per-class counts are FER-2013's published ones, so a wrong code -> class mapping
    fails here even where the tiny table above would not notice.
    """
    rep = mf.Report()
    items = ad.fer2013_items(fer2013_csv.parent, ALL, tmp_path / "images", rep)
    assert not rep.warnings
    counts: dict[str, dict[str, int]] = {}
    for it in items:
        per = counts.setdefault(it.split, {})
        per[it.clip_label] = per.get(it.clip_label, 0) + 1
    assert counts == {
        "train": {
            "anger": 3995,
            "disgust": 436,
            "fear": 4097,
            "happiness": 7215,
            "sadness": 4830,
            "surprise": 3171,
            "neutral": 4965,
        },
        "dev": {
            "anger": 467,
            "disgust": 56,
            "fear": 496,
            "happiness": 895,
            "sadness": 653,
            "surprise": 415,
            "neutral": 607,
        },
    }
    assert sum(counts["train"].values()) == 28709 and sum(counts["dev"].values()) == 3589
    assert len(list((tmp_path / "images").iterdir())) == len(items)
    info = mf.probe(items[0].media_path)
    assert (info.modality, info.width, info.height, info.n_frames) == ("image", 48, 48, 1)


def _arff(path: Path, vid: str, values, step_s: float = 0.04) -> None:
    """An AVEC 2016 gold-standard ARFF file: rows ``'<vid>',<time>,<value>`` every 40 ms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"'{vid}',{k * step_s:.6f},{v:.6f}\n" for k, v in enumerate(values))
    path.write_text(
        "@relation GOLDSTANDARD\n\n@attribute Instance_name string\n"
        "@attribute frameTime numeric\n@attribute GoldStandard numeric\n\n@data\n\n" + rows
    )


def test_recola_gold_standard_becomes_per_frame_va_files(tmp_path, make_video):
    root = tmp_path / "recola"
    gold = root / "ratings_gold_standard"
    valence, arousal = np.linspace(-0.5, 0.5, 10), np.linspace(0.9, 0.0, 10)  # 0.4 s of 40 ms
    for vid, fps in (("train_1", 25.0), ("dev_1", 50.0)):
        make_video(root / "recordings_video" / f"{vid}.mp4", n_frames=15, fps=fps, audio=False)
        _arff(gold / "valence" / f"{vid}.arff", vid, valence)
        _arff(gold / "arousal" / f"{vid}.arff", vid, arousal)
    make_video(root / "recordings_video" / "test_1.mp4", n_frames=5)  # test ratings withheld
    _arff(gold / "valence" / "train_2.arff", "train_2", valence[:9])
    make_video(root / "recordings_video" / "train_2.mp4", n_frames=5)
    _arff(gold / "arousal" / "train_2.arff", "train_2", arousal)  # 9 valence, 10 arousal
    rep = mf.Report()
    labels = tmp_path / "labels"
    items = ad.recola_items(root, "va", labels, rep)
    assert [(i.video_id, i.split, i.speaker) for i in items] == [
        ("dev_1", "dev", "dev_1"),
        ("train_1", "train", "train_1"),
    ]
    from pipeline.labels.files import read_va_labels

    at25 = read_va_labels(labels / "train_1.txt")  # 25 fps: frame k is gold sample k
    assert at25.shape == (15, 2) and np.isnan(at25[10:]).all()  # past the ratings: unannotated
    np.testing.assert_allclose(at25[:10], np.stack([valence, arousal], 1), atol=1e-6)
    at50 = read_va_labels(labels / "dev_1.txt")  # 50 fps: frame k is sample round(k / 2)
    np.testing.assert_allclose(
        at50[:, 0], valence[np.rint(np.arange(15) / 2).astype(int)], atol=1e-5
    )
    problems = sorted(w["problem"] for w in rep.warnings)
    assert problems[0].startswith("9 valence but 10 arousal ratings")
    assert problems[1].startswith("no gold standard") and "test_1.arff" in problems[1]
    rows = mf.build_manifest(
        items, task="va", classes=ALL, max_label_mismatch_s=0.0, n_jobs=1, report=rep
    )
    assert [r.label_frames for r in rows] == [15, 15]  # every frame has its label line

    with pytest.raises(PipelineError, match="valence/arousal ratings only"):
        ad.recola_items(root, "expr", labels, mf.Report())
    _arff(gold / "valence" / "train_1.arff", "train_1", valence, step_s=0.1)
    with pytest.raises(PipelineError, match="no RECOLA recording"):
        ad.recola_items(root / "recordings_video", "va", tmp_path / "l2", mf.Report())
    rep = mf.Report()
    ad.recola_items(root, "va", labels, rep)
    assert any("rows are not 40 ms apart" in w["problem"] for w in rep.warnings)
