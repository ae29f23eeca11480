"""Manifest: adapters, probing, and the defined outcome of every kind of bad input."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import adapters as ad
from pipeline.data import manifest as mf
from pipeline.errors import DataError, PipelineError

CLASSES = ("neutral", "anger", "disgust", "fear", "happiness", "sadness")
HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness"


def _labels(path, n, header=HEADER, value=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "\n".join([str(value)] * n) + "\n")
    return path


def _affwild(root, make_video, specs):
    """specs: {video_id: (split_dir or None, n_frames, n_label_lines, audio)}"""
    for vid, (split_dir, n, n_lab, audio) in specs.items():
        if n is not None:
            make_video(root / "videos" / f"{vid}.mp4", n_frames=n, fps=25.0, audio=audio)
        if split_dir:
            _labels(root / "annotations" / "EXPR_Set" / split_dir / f"{vid}.txt", n_lab)


def _build(items, **kw):
    rep = mf.Report()
    rows = mf.build_manifest(
        items, task="expr", classes=CLASSES, max_label_mismatch_s=1.0, n_jobs=1, report=rep, **kw
    )
    return rows, rep


def test_affwild2_layout_edge_cases(tmp_path, make_video):
    _affwild(
        tmp_path,
        make_video,
        {
            "v_ok": ("Train_Set", 25, 25, True),
            "v_noaudio": ("Validation_Set", 25, 25, False),
            "v_short_labels": ("Test_Set", 50, 40, True),  # 0.4 s short: kept, tail unannotated
            "v_bad_labels": ("Train_Set", 25, 75, True),  # 2 s too long: skipped
            "v_nolabel": (None, 25, 0, True),  # video without label file: skipped
            "v_novideo": ("Train_Set", None, 25, True),  # label file without video: skipped
        },
    )
    (tmp_path / "videos" / "v_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    _labels(tmp_path / "annotations" / "EXPR_Set" / "Train_Set" / "v_corrupt.txt", 25)
    rep = mf.Report()
    items = ad.affwild2_items(tmp_path, "expr", rep)
    rows = mf.build_manifest(
        items, task="expr", classes=CLASSES, max_label_mismatch_s=1.0, n_jobs=1, report=rep
    )
    by_id = {r.video_id: r for r in rows}
    assert sorted(by_id) == ["v_noaudio", "v_ok", "v_short_labels"]
    assert [r.video_id for r in rows] == sorted(by_id)  # sorted output
    ok = by_id["v_ok"]
    assert (ok.split, ok.n_frames, ok.fps, ok.has_audio, ok.label_frames) == (
        "train",
        25,
        25.0,
        True,
        25,
    )
    assert ok.duration_s == pytest.approx(1.0, abs=0.1) and (ok.width, ok.height) == (64, 48)
    assert by_id["v_noaudio"].has_audio is False and by_id["v_noaudio"].split == "dev"
    assert by_id["v_short_labels"].label_frames == 40
    problems = {json.dumps(w) for w in rep.warnings}
    text = " ".join(problems)
    assert "v_corrupt.mp4" in text and "skipped" in text
    assert "v_bad_labels.txt" in text and "75 label lines for 25 video frames" in text
    assert "v_nolabel.mp4" in text and "no EXPR_Set label file" in text
    assert "v_novideo.txt" in text and "no video for label file" in text
    assert "no audio track" in text and "shorter than its video (40 vs 50 frames)" in text


def test_header_with_unknown_class_stops(tmp_path, make_video):
    make_video(tmp_path / "videos" / "a.mp4", n_frames=5)
    _labels(
        tmp_path / "annotations" / "EXPR_Set" / "Train_Set" / "a.txt",
        5,
        header=HEADER + ",Surprise",
    )
    rep = mf.Report()
    with pytest.raises(DataError, match=r"header classes \['surprise'\] are not in base.classes"):
        mf.build_manifest(
            ad.affwild2_items(tmp_path, "expr", rep),
            task="expr",
            classes=CLASSES,
            max_label_mismatch_s=1.0,
            n_jobs=1,
            report=rep,
        )
    assert rep.errors and rep.errors[0]["file"].endswith("a.txt")


def test_empty_train_or_dev_split_stops_empty_test_warns(tmp_path, make_video):
    v = make_video(tmp_path / "v.mp4", n_frames=5)
    only_train = [mf.Item("a", str(v), "train", "s", clip_label="anger")]
    with pytest.raises(PipelineError, match="split 'dev' is empty"):
        _build(only_train)
    rows, rep = _build(only_train + [mf.Item("b", str(v), "dev", "s", clip_label="fear")])
    assert len(rows) == 2 and any("split 'test' is empty" in w["problem"] for w in rep.warnings)
    with pytest.raises(PipelineError, match="no usable video"):
        _build([mf.Item("a", str(v), "train", "s", clip_label="surprise")])


def test_a_speaker_in_two_splits_is_flagged(tmp_path, make_video):
    v = make_video(tmp_path / "v.mp4", n_frames=5)
    items = [
        mf.Item("a", str(v), "train", "s1", clip_label="anger"),
        mf.Item("b", str(v), "dev", "s1", clip_label="fear"),
        mf.Item("c", str(v), "dev", "s2", clip_label="fear"),
    ]
    rows, rep = _build(items)
    flagged = [w for w in rep.warnings if "several splits" in w["problem"]]
    assert len(rows) == 3 and len(flagged) == 1
    assert flagged[0]["file"] == "(speaker s1)" and "['dev', 'train']" in flagged[0]["problem"]


def test_duplicate_ids_stop(tmp_path, make_video):
    v = make_video(tmp_path / "v.mp4", n_frames=5)
    items = [
        mf.Item("a", str(v), "train", "s", clip_label="anger"),
        mf.Item("a", str(v), "dev", "s", clip_label="fear"),
    ]
    with pytest.raises(PipelineError, match="duplicate video id 'a'"):
        _build(items)


def test_csv_adapter(tmp_path, make_video):
    make_video(tmp_path / "clips" / "x.mp4", n_frames=5)
    make_video(tmp_path / "clips" / "y.mp4", n_frames=5, audio=False)
    _labels(tmp_path / "labels" / "y.txt", 5, value=4)
    table = tmp_path / "table.csv"
    table.write_text(
        "media,split,label,label_file,speaker\n"
        "clips/x.mp4,train,Anger,,spk1\n"
        "clips/y.mp4,dev,,labels/y.txt,\n"
        "clips/z.mp4,test,fear,,spk3\n"  # missing media: skipped
        "clips/x.mp4,holdout,fear,,spk3\n"
    )  # unknown split: skipped
    rep = mf.Report()
    items = ad.csv_items(tmp_path, table, rep)
    assert [i.video_id for i in items] == ["x", "y", "z"]
    assert items[0].clip_label == "anger" and items[1].speaker == "y"
    rows = mf.build_manifest(
        items, task="expr", classes=CLASSES, max_label_mismatch_s=1.0, n_jobs=1, report=rep
    )
    assert [r.video_id for r in rows] == ["x", "y"]
    assert any("z.mp4: file not found" in f"{w['file']}: {w['problem']}" for w in rep.warnings)
    assert any("split 'holdout'" in w["problem"] for w in rep.warnings)
    with pytest.raises(PipelineError, match="needs a 'label' or a 'label_file' column"):
        bad = tmp_path / "bad.csv"
        bad.write_text("media,split\nclips/x.mp4,train\n")
        ad.csv_items(tmp_path, bad, rep)


def test_write_read_round_trip(tmp_path, make_video):
    v = make_video(tmp_path / "v.mp4", n_frames=5)
    rows, _ = _build(
        [
            mf.Item("a", str(v), "train", "s", clip_label="anger"),
            mf.Item("b", str(v), "dev", "s", clip_label="fear"),
        ]
    )
    dst = tmp_path / "m.csv"
    mf.write_manifest(dst, rows)
    assert mf.read_manifest(dst) == rows
    with open(dst) as fh:
        assert next(csv.reader(fh))[:3] == ["video_id", "media_path", "split"]


def test_split_groups_is_seeded_and_covers_each_split():
    groups = [f"{i:04d}" for i in range(91)]  # CREMA-D has 91 actors
    a = ad.split_groups(groups, {"train": 0.7, "dev": 0.15, "test": 0.15}, seed=13)
    assert a == ad.split_groups(groups, {"train": 0.7, "dev": 0.15, "test": 0.15}, seed=13)
    assert a != ad.split_groups(groups, {"train": 0.7, "dev": 0.15, "test": 0.15}, seed=14)
    counts = {s: sum(v == s for v in a.values()) for s in mf.SPLITS}
    assert counts == {"train": 63, "dev": 14, "test": 14}
    assert set(
        ad.split_groups(["a", "b"], {"train": 0.7, "dev": 0.15, "test": 0.15}, 0).values()
    ) == {"train", "dev"}


def test_crema_d_real_sample_video(shared_data):
    root = shared_data / "crema-d-sample"
    rep = mf.Report()
    items = ad.crema_d_items(
        root, "video", CLASSES, {"train": 0.7, "dev": 0.15, "test": 0.15}, 13, rep
    )
    assert [i.video_id for i in items] == [
        f"1001_DFA_{c}_XX" for c in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    ]
    assert {i.speaker for i in items} == {"1001"}
    assert [i.clip_label for i in items] == [
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
    ]
    infos = [mf.probe(i.media_path) for i in items]
    for info in infos:  # FLV, VP6 480x360 at 29.97 fps, MP3 44.1 kHz, 1.9-2.3 s
        assert (info.width, info.height, info.audio_rate_hz) == (480, 360, 44100)
        assert info.fps == pytest.approx(29.97, abs=0.01) and 1.8 < info.duration_s < 2.4
        assert abs(info.n_frames - info.duration_s * info.fps) <= 2


def test_crema_d_real_sample_audio_and_class_filter(shared_data):
    root = shared_data / "crema-d-sample"
    rep = mf.Report()
    classes = ("neutral", "anger", "happiness", "sadness")  # no disgust / fear
    items = ad.crema_d_items(root, "audio", classes, {"train": 1.0}, 0, rep)
    assert [i.speaker for i in items] == ["1002"] * 4 and all(i.split == "train" for i in items)
    assert sum("is not in base.classes" in w["problem"] for w in rep.warnings) == 2
    info = mf.probe(items[0].media_path)
    assert not info.has_video and info.has_audio and info.n_frames == 0


def test_probe_rejects_non_media(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_text("hello")
    with pytest.raises(DataError, match=r"x\.mp4: cannot be opened as media"):
        mf.probe(bad)
    with pytest.raises(DataError, match="file not found"):
        mf.probe(tmp_path / "missing.mp4")


@pytest.mark.parametrize(
    "vid,why",
    [
        ("../../escaped", "holds '/'"),
        ("sub/dir", "holds '/'"),
        ("a b", "holds ' '"),
        (".hidden", "starts with '.'"),
        ("..", "starts with '.'"),
        ("", "empty"),
        ("a\\b", "holds"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_unsafe_ids(vid, why):
    assert why in mf.id_problem(vid)


@pytest.mark.parametrize(
    "vid", ["v01", "1001_DFA_ANG_XX", "clip.v2", "a-b", "Müller_01", "e\u0301t\u00e9"]
)
def test_safe_ids(vid):
    assert mf.id_problem(vid) == ""


def test_ids_equal_ignoring_case_and_normalisation_collide():
    assert mf.id_key("Clip_A") == mf.id_key("clip_a")
    assert mf.id_key("\u00e9t\u00e9") == mf.id_key("e\u0301te\u0301")  # NFC vs NFD


def test_read_manifest_refuses_a_hand_edited_unsafe_id(tmp_path, make_video):
    v = make_video(tmp_path / "v.mp4", n_frames=5)
    rows, _ = _build(
        [
            mf.Item("a", str(v), "train", "s", clip_label="anger"),
            mf.Item("b", str(v), "dev", "s", clip_label="fear"),
        ]
    )
    dst = tmp_path / "manifest.csv"
    mf.write_manifest(dst, rows)
    dst.write_text(dst.read_text().replace("\nb,", "\n../b,"))
    with pytest.raises(DataError, match=r"manifest\.csv: line 3: unsafe video id '\.\./b'"):
        mf.read_manifest(dst)
    mf.write_manifest(dst, rows)
    dst.write_text(dst.read_text().replace("\nb,", "\nA,"))
    with pytest.raises(DataError, match=r"manifest\.csv: line 3: video id 'A' repeats line 2"):
        mf.read_manifest(dst)


def test_outside_root(tmp_path):
    root = tmp_path / "ds"
    (root / "clips").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere")
    assert ad.outside_root(root, "clips/x.mp4") == ""
    assert ad.outside_root(root, "clips/../x.mp4") == ""
    assert ad.outside_root(root, str(root / "clips" / "x.mp4")) == ""  # absolute, inside
    assert "is outside root" in ad.outside_root(root, "../../etc/passwd")
    assert "is outside root" in ad.outside_root(root, "/etc/passwd")
    assert "is outside root" in ad.outside_root(root, "clips/../../ds2/x.mp4")
    assert "symlinked folder linked" in ad.outside_root(root, "linked/x.mp4")


def test_csv_table_with_byte_order_mark(tmp_path, make_video):
    make_video(tmp_path / "x.mp4", n_frames=5)
    table = tmp_path / "t.csv"
    table.write_bytes("\ufeffmedia,split,label\r\nx.mp4,train,anger\r\n".encode())
    items = ad.csv_items(tmp_path, table, mf.Report())
    got = [(i.video_id, i.split, i.clip_label, i.line) for i in items]
    assert got == [("x", "train", "anger", 2)]


def test_csv_line_numbers_count_blank_lines(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("media,split,label\n\nx.mp4,train,anger\n\ny.mp4,dev,fear\n")
    items = ad.csv_items(tmp_path, table, mf.Report())
    assert [(i.video_id, i.line) for i in items] == [("x", 3), ("y", 5)]


def _wav(path, seconds=0.5, rate=16000):
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    return path


def test_emodb_adapter_on_a_layout_it_builds(tmp_path):
    for name in ("03a01Wa", "03a02Nc", "08b01Fa", "09a05Lb", "10a01Tc", "xx_bad", "11a01Ea"):
        _wav(tmp_path / "wav" / f"{name}.wav")
    rep = mf.Report()
    classes = ("neutral", "anger", "happiness", "sadness", "boredom")  # no disgust
    items = ad.emodb_items(tmp_path, classes, ("08",), ("09", "10"), rep)
    got = {i.video_id: (i.split, i.speaker, i.clip_label) for i in items}
    assert got == {
        "03a01Wa": ("train", "03", "anger"),
        "03a02Nc": ("train", "03", "neutral"),
        "08b01Fa": ("dev", "08", "happiness"),
        "09a05Lb": ("test", "09", "boredom"),
        "10a01Tc": ("test", "10", "sadness"),
    }
    problems = {Path(w["file"]).name: w["problem"] for w in rep.warnings}
    assert "EmoDB naming" in problems["xx_bad.wav"]
    assert "'disgust' is not in base.classes" in problems["11a01Ea.wav"]
    rows = mf.build_manifest(
        items, task="expr", classes=classes, max_label_mismatch_s=1.0, n_jobs=1, report=rep
    )
    assert {r.modality for r in rows} == {"audio"} and len(rows) == 5
    with pytest.raises(PipelineError, match=r"\['09'\] are in both"):
        ad.emodb_items(tmp_path, classes, ("09",), ("09",), rep)


def test_emodb_adapter_on_the_real_copy(emodb_dir):
    rep = mf.Report()
    classes = ("neutral", "anger", "boredom", "disgust", "fear", "happiness", "sadness")
    items = ad.emodb_items(emodb_dir.parent, classes, ("03", "08"), ("09", "10"), rep)
    assert len(items) == 408 and not rep.warnings
    by_split = {s: {i.speaker for i in items if i.split == s} for s in ("train", "dev", "test")}
    assert by_split == {
        "train": {"11", "12", "13", "14"},
        "dev": {"03", "08"},
        "test": {"09", "10"},
    }
