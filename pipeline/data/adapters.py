"""Dataset adapters: each turns one dataset's own layout into manifest :class:`Item` s.

An item is one clip (or image) with its id, media path, split, speaker and labels (a
per-frame label file or one clip label). :func:`adapter_items` is the one dispatch from
``build_manifest.adapter``; :func:`pipeline.data.manifest.build_manifest` then probes the
media and checks the labels. Adapters report files they cannot use in the manifest report
(:class:`~pipeline.data.manifest.Report`) and skip them; they stop (``PipelineError``) only
when the dataset as a whole is unusable (no files in the expected layout, contradictory
params). Items come back in a stable order (sorted paths).
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.manifest import SPLITS, Item, Report, id_problem
from pipeline.errors import DataError, PipelineError
from pipeline.io.atomic import atomic_path

AFFWILD2_SPLITS = {"Train_Set": "train", "Validation_Set": "dev", "Test_Set": "test"}
AFFWILD2_TASK_DIRS = {"expr": "EXPR_Set", "va": "VA_Set"}
EMODB_CODES = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
CREMA_CODES = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happiness",
    "NEU": "neutral",
    "SAD": "sadness",
}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".flv", ".webm")
RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happiness",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
ENTERFACE_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
ENTERFACE_SUBJECT = re.compile(r"subject[ _]?([0-9]+)", re.IGNORECASE)
ENTERFACE_SENTENCE = re.compile(r"sentence[ _]?([0-9]+)", re.IGNORECASE)
AFEW_SPLITS = {"Train_AFEW": "train", "Val_AFEW": "dev"}
AFEW_EMOTIONS = {
    "Angry": "anger",
    "Disgust": "disgust",
    "Fear": "fear",
    "Happy": "happiness",
    "Neutral": "neutral",
    "Sad": "sadness",
    "Surprise": "surprise",
}
FER2013_FILES = ("fer2013.csv", "fer2013.csv.gz")
FER2013_EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
FER2013_SPLITS = {"Training": "train", "PublicTest": "dev", "PrivateTest": "test"}
FER2013_SIDE_PX = 48
RECOLA_SPLITS = ("train", "dev", "test")  # AVEC 2016 ids: train_1 ... dev_9, test_1 ...
RECOLA_RATE_HZ = 25.0  # the gold standard: one value every 40 ms


def affwild2_items(root: Path, task: str, report: Report) -> list[Item]:
    """Aff-Wild2 layout: ``videos/<id>.<ext>`` and ``annotations/<TASK>_Set/<Split>/<id>.txt``.

    Aff-Wild2 videos with two annotated people have label files ``<id>_left.txt`` /
    ``<id>_right.txt``; each becomes its own item on the same media file. Videos without a
    label file are skipped with a warning. The demo dataset is written in this layout.
    """
    ann = root / "annotations" / AFFWILD2_TASK_DIRS[task]
    videos = {
        p.stem: p
        for p in sorted((root / "videos").glob("*"))
        if p.suffix.lower() in VIDEO_SUFFIXES
    }
    items, labelled = [], set()
    for split_dir, split in AFFWILD2_SPLITS.items():
        for lf in sorted((ann / split_dir).glob("*.txt")):
            vid = lf.stem
            base = vid.rsplit("_", 1)[0] if vid.endswith(("_left", "_right")) else vid
            media = videos.get(vid) or videos.get(base)
            if media is None:
                report.warn(lf, f"no video for label file in {root / 'videos'}", "skipped")
                continue
            labelled.add(media.stem)
            items.append(Item(vid, str(media), split, base, label_file=str(lf), source=str(lf)))
    for stem, media in sorted(videos.items()):
        if stem not in labelled:
            report.warn(media, f"no {AFFWILD2_TASK_DIRS[task]} label file", "skipped")
    return items


def demo_items(root: Path, task: str, report: Report) -> list[Item]:
    """The embedded demo: Aff-Wild2 layout; every clip is CREMA-D actor 1001."""
    return [replace(i, speaker="1001") for i in affwild2_items(root, task, report)]


def crema_d_items(
    root: Path,
    media: str,
    classes: tuple[str, ...],
    fractions: dict[str, float],
    seed: int,
    report: Report,
) -> list[Item]:
    """Official CREMA-D layout: ``VideoFlash/*.flv`` or ``AudioWAV/*.wav`` (else ``AudioMP3``).

    Names follow ``ActorID_Sentence_Emotion_Level``; the emotion is a clip-level label.
    CREMA-D has no official split, so actors are split speaker-independently by
    ``fractions`` with a seeded shuffle.
    """
    if media == "video":
        files = sorted((root / "VideoFlash").glob("*.flv"))
    else:
        files = sorted((root / "AudioWAV").glob("*.wav")) or sorted(
            (root / "AudioMP3").glob("*.mp3")
        )
    if not files:
        raise PipelineError(
            f"{root}: no CREMA-D {media} files (expected VideoFlash/ or AudioWAV/, AudioMP3/)"
        )
    wanted = [c.lower() for c in classes]
    parsed = []
    for f in files:
        parts = f.stem.split("_")
        if len(parts) != 4 or parts[2] not in CREMA_CODES:
            report.warn(f, "name does not follow ActorID_Sentence_Emotion_Level", "skipped")
            continue
        label = CREMA_CODES[parts[2]]
        if label not in wanted:
            report.warn(f, f"emotion {label!r} is not in base.classes", "skipped")
            continue
        parsed.append((f, parts[0], label))
    split_of = split_groups(sorted({spk for _, spk, _ in parsed}), fractions, seed)
    return [Item(f.stem, str(f), split_of[spk], spk, clip_label=label) for f, spk, label in parsed]


def emodb_items(
    root: Path,
    classes: tuple[str, ...],
    dev_speakers: tuple[str, ...],
    test_speakers: tuple[str, ...],
    report: Report,
) -> list[Item]:
    """Berlin EmoDB: ``root/wav/*.wav`` (or ``root/*.wav``) named like ``03a01Fa.wav``.

    Characters 1-2 are the speaker, character 6 the emotion (W anger, L boredom, E disgust,
    A fear, F happiness, T sadness, N neutral), a clip-level label. The split is
    speaker-independent: ``dev_speakers`` and ``test_speakers`` (two-digit codes), every
    other speaker trains.
    """
    folder = root / "wav" if (root / "wav").is_dir() else root
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise PipelineError(f"{root}: no EmoDB wav files (expected wav/*.wav)")
    check_speaker_lists(dev_speakers, test_speakers)
    wanted = [c.lower() for c in classes]
    items = []
    for f in files:
        code = f.stem[5:6]
        if len(f.stem) != 7 or not f.stem[:2].isdigit() or code not in EMODB_CODES:
            report.warn(f, "name does not follow EmoDB naming (e.g. 03a01Fa.wav)", "skipped")
            continue
        label = EMODB_CODES[code]
        if label not in wanted:
            report.warn(f, f"emotion {label!r} is not in base.classes", "skipped")
            continue
        speaker = f.stem[:2]
        split = speaker_split(speaker, dev_speakers, test_speakers)
        items.append(Item(f.stem, str(f), split, speaker, clip_label=label))
    return items


def ravdess_items(
    root: Path,
    classes: tuple[str, ...],
    dev_speakers: tuple[str, ...],
    test_speakers: tuple[str, ...],
    report: Report,
) -> list[Item]:
    """RAVDESS: ``Actor_NN/MM-VC-EE-II-SS-RR-AA.mp4`` (or ``.wav``), as the official zips unpack.

    The seven two-digit fields are modality MM (01 audio-video, 02 video only, 03 audio
    only), vocal channel VC (01 speech, 02 song), emotion EE (see :data:`RAVDESS_EMOTIONS`),
    intensity II (01 normal, 02 strong), statement SS (01, 02), repetition RR (01, 02) and
    actor AA, the speaker, which must match the folder. The emotion is a clip label. A
    recording found in several modalities (the video zips hold 01 and 02 of each, the audio
    zips 03) becomes one item: the file with the lowest modality code, so 01 (audio-video)
    wins; the others are counted in one warning. The split is speaker-independent:
    ``dev_speakers`` and ``test_speakers`` (two-digit actor codes), every other actor trains.
    """
    check_speaker_lists(dev_speakers, test_speakers)
    files = sorted(p for p in root.glob("Actor_*/*") if p.is_file() and not _hidden(p))
    if not files:
        raise PipelineError(
            f"{root}: no RAVDESS files (expected Actor_NN/MM-VC-EE-II-SS-RR-AA.mp4 or .wav)"
        )
    named, best = [], {}  # best: recording (the name without MM) -> its file of lowest MM
    for f in files:
        why = ravdess_name_problem(f)
        if why:
            report.warn(f, f"{why}; RAVDESS names read MM-VC-EE-II-SS-RR-AA.mp4", "skipped")
            continue
        named.append(f)
        recording = f.stem[3:]
        if recording not in best or f.stem < best[recording].stem:
            best[recording] = f
    wanted = [c.lower() for c in classes]
    items, duplicates = [], []
    for f in named:
        if best[f.stem[3:]] != f:
            duplicates.append(f.name)
            continue
        label = RAVDESS_EMOTIONS[f.stem[6:8]]
        if label not in wanted:
            report.warn(f, f"emotion {label!r} is not in base.classes", "skipped")
            continue
        speaker = f.stem[-2:]
        split = speaker_split(speaker, dev_speakers, test_speakers)
        items.append(Item(f.stem, str(f), split, speaker, clip_label=label))
    if duplicates:
        report.warn(
            root,
            f"{len(duplicates)} files repeat a recording in another modality "
            f"(e.g. {duplicates[0]})",
            "skipped: one file per recording, the lowest modality code (01 audio-video first)",
        )
    return items


def ravdess_name_problem(path: Path) -> str:
    """Why ``path`` is not a RAVDESS file ``Actor_NN/MM-VC-EE-II-SS-RR-AA.mp4|wav``, or ``""``."""
    if path.suffix.lower() not in (".mp4", ".wav"):
        return "not an .mp4 or .wav file"
    parts = path.stem.split("-")
    if len(parts) != 7 or not all(len(p) == 2 and p.isdigit() for p in parts):
        return "name is not seven two-digit fields"
    modality, channel, emotion, intensity, statement, repetition, actor = parts
    checks = (
        ("modality", modality, ("01", "02", "03")),
        ("vocal channel", channel, ("01", "02")),
        ("emotion", emotion, tuple(RAVDESS_EMOTIONS)),
        ("intensity", intensity, ("01", "02")),
        ("statement", statement, ("01", "02")),
        ("repetition", repetition, ("01", "02")),
    )
    for field, value, allowed in checks:
        if value not in allowed:
            return f"{field} code {value} is not one of {', '.join(allowed)}"
    if path.parent.name != f"Actor_{actor}":
        return f"actor {actor} of the name is not its folder {path.parent.name}"
    return ""


def enterface05_items(
    root: Path,
    classes: tuple[str, ...],
    dev_speakers: tuple[str, ...],
    test_speakers: tuple[str, ...],
    report: Report,
) -> list[Item]:
    """eNTERFACE'05: ``subject N/<emotion>/sentence M/*.avi``, the corpus's own folders.

    The emotion folder (anger, disgust, fear, happiness, sadness, surprise; no neutral) is
    the clip label. Subject 6 of the real corpus has its files directly in the emotion
    folder; that is accepted for every subject. The subject is the speaker, as a two-digit
    code (``subject 6`` -> ``06``), split by ``dev_speakers`` and ``test_speakers``, every
    other subject trains. Folders ``subject_N``/``sentence_N`` (underscore) are read too.
    Video ids read ``s06_anger_<stem>`` or ``s01_anger_3_<stem>`` (subject, emotion,
    sentence, file stem): unique by construction. Anything else in the tree (other folders,
    files that are not ``.avi``, unsafe names) is reported and skipped.
    """
    check_speaker_lists(dev_speakers, test_speakers)
    subjects = [p for p in _entries(root) if p.is_dir()] if root.is_dir() else []
    if not any(ENTERFACE_SUBJECT.fullmatch(p.name) for p in subjects):
        raise PipelineError(
            f"{root}: no eNTERFACE'05 folders (expected 'subject N/<emotion>/sentence M/*.avi')"
        )
    wanted = [c.lower() for c in classes]
    items = []
    for subject_dir in subjects:
        m = ENTERFACE_SUBJECT.fullmatch(subject_dir.name)
        if not m:
            report.warn(subject_dir, "not a 'subject N' folder", "skipped")
            continue
        speaker = f"{int(m[1]):02d}"
        for emotion_dir in _entries(subject_dir):
            emotion = emotion_dir.name.lower()
            if not emotion_dir.is_dir() or emotion not in ENTERFACE_EMOTIONS:
                report.warn(
                    emotion_dir,
                    f"not an emotion folder ({', '.join(ENTERFACE_EMOTIONS)})",
                    "skipped",
                )
                continue
            clips = []  # (sentence number or "", file)
            for entry in _entries(emotion_dir):
                s = ENTERFACE_SENTENCE.fullmatch(entry.name)
                if entry.is_dir() and s:
                    clips += [(str(int(s[1])), f) for f in _entries(entry)]
                elif entry.is_dir():
                    report.warn(entry, "not a 'sentence M' folder", "skipped")
                else:
                    clips.append(("", entry))
            for sentence, f in clips:
                vid = "_".join(x for x in (f"s{speaker}", emotion, sentence, f.stem) if x)
                why = "not an .avi file" if f.suffix.lower() != ".avi" else id_problem(vid)
                if why:
                    report.warn(f, why, "skipped")
                    continue
                if emotion not in wanted:
                    report.warn(f, f"emotion {emotion!r} is not in base.classes", "skipped")
                    continue
                split = speaker_split(speaker, dev_speakers, test_speakers)
                items.append(Item(vid, str(f), split, speaker, clip_label=emotion))
    return items


def afew_items(root: Path, classes: tuple[str, ...], report: Report) -> list[Item]:
    """AFEW (EmotiW): ``Train_AFEW/<Emotion>/*.avi`` and ``Val_AFEW/<Emotion>/*.avi``.

    The emotion folder (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise; see
    :data:`AFEW_EMOTIONS`) is the clip label. ``Train_AFEW`` trains, ``Val_AFEW`` is dev;
    AFEW's test labels are not public, so the test split stays empty (a ``Test_AFEW`` folder
    is reported and skipped). Clips are film excerpts without actor ids: each clip is its own
    speaker (Train and Val come from different films). The video id is the file stem, the
    clip's AFEW id. Other folders, files that are not ``.avi`` and unsafe names are reported
    and skipped.
    """
    if not any((root / d).is_dir() for d in AFEW_SPLITS):
        raise PipelineError(f"{root}: no AFEW folders (expected Train_AFEW/, Val_AFEW/)")
    if (root / "Test_AFEW").is_dir():
        report.warn(root / "Test_AFEW", "AFEW's test labels are not public", "skipped")
    by_name = {name.lower(): label for name, label in AFEW_EMOTIONS.items()}
    wanted = [c.lower() for c in classes]
    items = []
    for split_dir, split in AFEW_SPLITS.items():
        if not (root / split_dir).is_dir():
            continue
        for emotion_dir in _entries(root / split_dir):
            label = by_name.get(emotion_dir.name.lower()) if emotion_dir.is_dir() else None
            if label is None:
                report.warn(
                    emotion_dir,
                    f"not an emotion folder ({', '.join(AFEW_EMOTIONS)})",
                    "skipped",
                )
                continue
            for f in _entries(emotion_dir):
                avi = f.is_file() and f.suffix.lower() == ".avi"
                why = id_problem(f.stem) if avi else "not an .avi file"
                if why:
                    report.warn(f, why, "skipped")
                    continue
                if label not in wanted:
                    report.warn(f, f"emotion {label!r} is not in base.classes", "skipped")
                    continue
                items.append(Item(f.stem, str(f), split, f.stem, clip_label=label))
    return items


def fer2013_items(
    root: Path, classes: tuple[str, ...], images: Path, report: Report
) -> list[Item]:
    """FER-2013: Kaggle's ``fer2013.csv`` (or ``fer2013.csv.gz``) under ``root``.

    Columns ``emotion`` (0 anger, 1 disgust, 2 fear, 3 happiness, 4 sadness, 5 surprise,
    6 neutral: :data:`FER2013_EMOTIONS`), ``pixels`` (48 x 48 = 2,304 grey levels,
    space-separated, row by row) and ``Usage`` (Training -> train, PublicTest -> dev,
    PrivateTest -> test). Each row is a face, already cropped and aligned; it is written as
    an 8-bit grey PNG ``images/fer2013_NNNNN.png`` (NNNNN: the row number in the
    table, from 1) and becomes an item of one frame (modality ``image``). FER-2013 has no
    subject ids: each image is its own speaker.

    The table is streamed (memory does not grow with it) and ``images`` is written whole
    under a temporary name and renamed into place, so a failed run leaves no partial folder.
    Rows whose emotion ``base.classes`` lacks are not written; one warning per such emotion
    counts them. Malformed rows are reported with their line and skipped.

    Raises
    ------
    PipelineError
        No table; a table that cannot be read (a truncated gzip file, not UTF-8), or a
        header without the columns ``emotion, pixels, Usage`` (:class:`DataError`).
    """
    table = next((root / n for n in FER2013_FILES if (root / n).is_file()), None)
    if table is None:
        raise PipelineError(f"{root}: no FER-2013 table (expected {' or '.join(FER2013_FILES)})")
    opener = gzip.open if table.suffix == ".gz" else open
    wanted = [c.lower() for c in classes]
    items, left_out = [], Counter()
    try:
        with atomic_path(images) as tmp, opener(table, "rt", encoding="utf-8", newline="") as fh:
            tmp.mkdir()
            reader = csv.DictReader(fh)
            need = {"emotion", "pixels", "Usage"}
            if not need <= set(reader.fieldnames or ()):
                raise DataError(table, f"needs a header with the columns {sorted(need)}")
            for n, row in enumerate(reader, start=1):
                line = reader.line_num
                face, why = fer2013_face(row)
                if why:
                    report.warn(table, f"line {line}: {why}", "skipped")
                    continue
                label = FER2013_EMOTIONS[int(row["emotion"])]
                if label not in wanted:
                    left_out[label] += 1
                    continue
                vid = f"fer2013_{n:05d}"
                if not cv2.imwrite(str(tmp / f"{vid}.png"), face):
                    raise PipelineError(f"{tmp / vid}.png: could not be written")
                media = str(images / f"{vid}.png")
                split = FER2013_SPLITS[row["Usage"]]
                items.append(
                    Item(vid, media, split, vid, clip_label=label, source=str(table), line=line)
                )
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:  # gzip, text, csv
        raise DataError(table, f"cannot be read as a FER-2013 table ({err})") from None
    for label, count in sorted(left_out.items()):
        rows = f"{count} row" + ("s" if count > 1 else "")
        report.warn(table, f"emotion {label!r} is not in base.classes ({rows})", "skipped")
    return items


def fer2013_face(row: dict[str, str | None]) -> tuple[np.ndarray | None, str]:
    """``(face uint8 [48, 48], "")`` from one FER-2013 table row, or ``(None, why not)``."""
    emotion, usage = (row.get("emotion") or "").strip(), row.get("Usage") or ""
    if emotion not in [str(k) for k in range(len(FER2013_EMOTIONS))]:
        return None, f"emotion {emotion!r} is not a code 0-{len(FER2013_EMOTIONS) - 1}"
    if usage not in FER2013_SPLITS:
        return None, f"Usage {usage!r} is not one of {', '.join(FER2013_SPLITS)}"
    try:
        values = np.array((row.get("pixels") or "").split(), dtype=np.int64)
    except ValueError:
        return None, "pixels are not whole numbers"
    side = FER2013_SIDE_PX
    if values.size != side * side:
        return None, f"{values.size} pixels, not {side} x {side} = {side * side}"
    if values.min() < 0 or values.max() > 255:
        return None, "pixel values outside 0-255"
    return values.astype(np.uint8).reshape(side, side), ""


def recola_items(root: Path, task: str, labels: Path, report: Report) -> list[Item]:
    """RECOLA as released for AVEC 2016: ``recordings_video/<id>.mp4`` and the gold standard
    ``ratings_gold_standard/{arousal,valence}/<id>.arff`` (ids ``train_N``, ``dev_N``,
    ``test_N``; the split is the prefix, each recording one subject).

    The gold standard holds one value every 40 ms (ARFF rows ``'<id>',<time s>,<value>``).
    For each recording a per-frame valence/arousal file in the Aff-Wild2 VA format is written
    to ``labels/<id>.txt`` at the video's own frame rate: frame k gets the gold-standard value
    nearest to k / fps, and frames past its end ``-5`` (unannotated). ``labels`` is written
    whole under a temporary name and renamed into place. Recordings without both ratings
    (AVEC withholds the test ratings) or without a video are skipped with a warning.

    Raises
    ------
    PipelineError
        ``task`` is not ``va`` (RECOLA has only valence/arousal ratings), or no recording
        has a video and both ratings.
    """
    from pipeline.data.media import probe

    if task != "va":
        raise PipelineError("the recola adapter has valence/arousal ratings only: base.task va")
    videos = {
        p.stem: p
        for p in sorted((root / "recordings_video").glob("*"))
        if p.suffix.lower() in VIDEO_SUFFIXES
    }
    gold = root / "ratings_gold_standard"
    items = []
    with atomic_path(labels) as tmp:
        tmp.mkdir()
        for vid, media in videos.items():
            split = vid.split("_", 1)[0]
            if split not in RECOLA_SPLITS:
                report.warn(media, "not a train_N, dev_N or test_N recording", "skipped")
                continue
            files = {d: gold / d / f"{vid}.arff" for d in ("valence", "arousal")}
            missing = [str(p) for p in files.values() if not p.is_file()]
            if missing:
                report.warn(media, f"no gold standard {', '.join(missing)}", "skipped")
                continue
            try:
                v, a = (read_gold_standard(files[d]) for d in ("valence", "arousal"))
            except DataError as err:
                report.warn(err.path, err.problem, "skipped")
                continue
            if len(v) != len(a):
                report.warn(media, f"{len(v)} valence but {len(a)} arousal ratings", "skipped")
                continue
            va = np.stack([v, a], axis=1)
            info = probe(media)
            frame_t = np.arange(info.n_frames) / info.fps
            k = np.rint(frame_t * RECOLA_RATE_HZ).astype(int)
            rows = np.where((k < len(va))[:, None], va[np.minimum(k, len(va) - 1)], -5.0)
            text = "valence,arousal\n" + "".join(f"{v:.6f},{a:.6f}\n" for v, a in rows)
            (tmp / f"{vid}.txt").write_text(text)
            items.append(Item(vid, str(media), split, vid, label_file=str(labels / f"{vid}.txt")))
    if not items:
        raise PipelineError(
            f"{root}: no RECOLA recording with a video (recordings_video/) and both ratings "
            "(ratings_gold_standard/{arousal,valence}/)"
        )
    return items


def read_gold_standard(path: Path) -> np.ndarray:
    """The values of an AVEC 2016 gold-standard ARFF file (rows ``'<id>',<time>,<value>``
    after ``@data``), in file order: float32 [n].

    Raises
    ------
    DataError
        No ``@data`` section, a row that is not ``name,time,value`` with numbers, or times
        that are not 40 ms apart.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"cannot be read ({err})") from None
    start = next((i for i, s in enumerate(lines) if s.strip().lower() == "@data"), None)
    if start is None:
        raise DataError(path, "no @data section (not an AVEC gold-standard ARFF file)")
    times, values = [], []
    for n, line in enumerate(lines[start + 1 :], start=start + 2):
        if not line.strip() or line.startswith("%"):
            continue
        parts = line.split(",")
        try:
            times.append(float(parts[1]))
            values.append(float(parts[2]))
        except (IndexError, ValueError):
            raise DataError(path, f"line {n}: {line[:60]!r} is not name,time,value") from None
    if len(times) > 1 and not np.allclose(np.diff(times), 1 / RECOLA_RATE_HZ, atol=1e-4):
        raise DataError(path, "rows are not 40 ms apart")
    return np.array(values, np.float32)


def check_speaker_lists(dev_speakers: tuple[str, ...], test_speakers: tuple[str, ...]) -> None:
    """Refuse a speaker listed in both ``dev_speakers`` and ``test_speakers``."""
    overlap = sorted(set(dev_speakers) & set(test_speakers))
    if overlap:
        raise PipelineError(
            f"build_manifest: speakers {overlap} are in both dev_speakers and test_speakers"
        )


def speaker_split(
    speaker: str, dev_speakers: tuple[str, ...], test_speakers: tuple[str, ...]
) -> str:
    """``dev`` or ``test`` for a listed speaker, ``train`` for every other one."""
    return "dev" if speaker in dev_speakers else "test" if speaker in test_speakers else "train"


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` that are not hidden (``.DS_Store``), sorted by name."""
    return sorted(p for p in folder.iterdir() if not _hidden(p))


def adapter_items(
    adapter: str, root: Path, cfg, report: Report, images: Path | None = None
) -> list[Item]:
    """The items of the dataset under ``root`` read by ``adapter`` (``build_manifest`` params
    ``cfg``: csv_file, crema_media, split_fractions, dev/test speakers, base classes, seed).

    ``images`` is the folder where adapters write the files they derive (the stage's
    ``--images`` output): ``fer2013`` its faces as PNG, ``recola`` per-frame label files.
    Every other adapter leaves it an empty folder, so the output DVC declares exists.
    """
    if adapter in ("fer2013", "recola") and images is None:
        raise PipelineError(
            f"the {adapter} adapter writes files (fer2013: faces as PNG, recola: per-frame "
            "labels): give build_manifest an --images folder"
        )
    if adapter == "fer2013":
        return fer2013_items(root, cfg.classes, images, report)
    if adapter == "recola":
        return recola_items(root, cfg.task, images, report)
    if images is not None:
        with atomic_path(images) as tmp:
            tmp.mkdir()
    if adapter == "demo":
        return demo_items(root, cfg.task, report)
    if adapter == "affwild2":
        return affwild2_items(root, cfg.task, report)
    if adapter == "crema_d":
        return crema_d_items(
            root, cfg.crema_media, cfg.classes, cfg.split_fractions, cfg.seed, report
        )
    if adapter == "emodb":
        return emodb_items(root, cfg.classes, cfg.dev_speakers, cfg.test_speakers, report)
    if adapter == "ravdess":
        return ravdess_items(root, cfg.classes, cfg.dev_speakers, cfg.test_speakers, report)
    if adapter == "enterface05":
        return enterface05_items(root, cfg.classes, cfg.dev_speakers, cfg.test_speakers, report)
    if adapter == "afew":
        return afew_items(root, cfg.classes, report)
    return csv_items(root, root / cfg.csv_file, report)  # params require csv_file for csv


def csv_items(root: Path, table: Path, report: Report) -> list[Item]:
    """A user's table with columns ``media, split`` and ``label`` or ``label_file``.

    Optional columns: ``video_id`` (default: media file stem) and ``speaker`` (default: the
    video id). Paths are relative to ``root`` and must stay inside it (see
    :func:`outside_root`); the table may be UTF-8 with or without a byte-order mark.

    Raises
    ------
    PipelineError
        No table, a header without the needed columns, or media/label paths outside
        ``root`` (each listed in the report with its line).
    """
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [(reader.line_num, r) for r in reader]  # physical line of each record
    except FileNotFoundError:
        raise PipelineError(f"{table}: csv table not found") from None
    except UnicodeDecodeError as err:
        raise PipelineError(f"{table}: not a UTF-8 csv table ({err})") from None
    need = {"media", "split"}
    if not rows or not need <= set(rows[0][1]):
        raise PipelineError(f"{table}: needs a header with at least columns {sorted(need)}")
    if not ({"label", "label_file"} & set(rows[0][1])):
        raise PipelineError(f"{table}: needs a 'label' or a 'label_file' column")
    items, outside = [], []
    for n, r in rows:
        split = (r.get("split") or "").strip()
        if split not in SPLITS:
            report.warn(table, f"line {n}: split {split!r} is not one of {SPLITS}", "skipped")
            continue
        rel_media = (r.get("media") or "").strip()
        rel_label = (r.get("label_file") or "").strip()
        if not rel_media:
            report.warn(table, f"line {n}: no media path", "skipped")
            continue
        bad = []
        for what, rel in (("media", rel_media), ("label_file", rel_label)):
            why = outside_root(root, rel) if rel else ""
            if why:
                bad.append(f"line {n}: {what} path {rel!r} {why}")
                report.error(table, bad[-1])
        if bad:
            outside += bad
            continue
        media = root / rel_media
        vid = (r.get("video_id") or "").strip() or media.stem
        items.append(
            Item(
                vid,
                str(media),
                split,
                (r.get("speaker") or "").strip() or vid,
                label_file=str(root / rel_label) if rel_label else "",
                clip_label=(r.get("label") or "").strip().lower(),
                source=str(table),
                line=n,
            )
        )
    if outside:
        more = f" (and {len(outside) - 1} more; see manifest_report.json)" if outside[1:] else ""
        raise PipelineError(
            f"{table}: {outside[0]}{more}; paths must stay inside the dataset "
            "folder, the only one DVC tracks"
        )
    return items


def outside_root(root: Path, rel: str) -> str:
    """Why the table path ``rel`` is not a file DVC tracks under ``root``, or ``""``.

    The path is checked as written, after resolving ``..`` lexically: it must stay inside
    ``root`` (relative, or absolute under ``root``). Symlinks are not resolved: a symlinked
    file under ``root`` is accepted (DVC hashes what it points to), but a path through a
    symlinked sub-folder is refused, because DVC does not walk into those, so a change behind
    it would never re-run anything.
    """
    base = os.path.abspath(root)
    full = os.path.abspath(os.path.join(base, rel))
    if os.path.commonpath([base, full]) != base:
        return f"is outside root {root}"
    parts = Path(os.path.relpath(full, base)).parts[:-1]
    for k in range(1, len(parts) + 1):
        if Path(base, *parts[:k]).is_symlink():
            return f"goes through the symlinked folder {Path(*parts[:k])} (DVC does not follow it)"
    return ""


def split_groups(groups: list[str], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Assign groups (speakers) to splits by fraction with a seeded shuffle.

    Every split with a positive fraction gets at least one group while groups remain, in
    the order train, dev, test; the rest go by rounded fractions, remainder to train.
    """
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    counts = {
        s: int(round(fractions.get(s, 0.0) / total * len(groups))) if total else 0 for s in SPLITS
    }
    for s in SPLITS:
        if fractions.get(s, 0.0) > 0 and counts[s] == 0:
            counts[s] = 1
    while sum(counts.values()) > len(groups):
        s = max((s for s in reversed(SPLITS) if counts[s] > 0), key=lambda s: counts[s])
        counts[s] -= 1
    counts["train"] += len(groups) - sum(counts.values())
    out, k = {}, 0
    for s in SPLITS:
        for g in order[k : k + counts[s]]:
            out[g] = s
        k += counts[s]
    return out
