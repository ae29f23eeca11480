"""Build the dataset manifest: one row per video, from any dataset through an adapter.

Adapters turn a dataset's own layout into :class:`Item` s (id, media, labels, split,
speaker). :func:`build_manifest` then probes every media file with PyAV and checks labels.

What stops the stage (:class:`~pipeline.errors.PipelineError`):
  a video id that is unsafe as a file and HDF5 group name (see :func:`id_problem`), or that
  equals another id up to case and Unicode normalisation (:func:`id_key`); a csv media or
  label path outside ``root``; a label header naming classes outside ``base.classes``; no
  usable video at all; an empty ``train`` or ``dev`` split (nothing to fit, nothing to tune
  fusion on); with ``strict: true``, any warning.
What is skipped with a warning (listed in ``manifest_report.json``):
  a missing or undecodable media file; a video without a label file; a label file that
  differs from its video by more than ``max_label_mismatch_s`` or holds bad lines (a blank
  line inside it, too); a clip label outside ``base.classes``.
Kept with a warning: a speaker in more than one split (scores are then not
speaker-independent); label files shorter or longer than the video within the tolerance
(missing tail frames are unannotated, -1; extra lines are ignored); partly decodable media
(the decoded part is used; its duration is recorded); files without an audio track
(modality ``video`` or ``image``: audio features give them no windows); in a dataset that
also has video, audio-only files (modality ``audio``: face features give them no windows);
an empty ``test`` split (evaluation then reports dev only).
"""

from __future__ import annotations

import csv
import logging
import os
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from pipeline.data.media import MODALITIES, MediaInfo, probe
from pipeline.errors import DataError, PipelineError
from pipeline.labels.files import read_expr_labels, read_va_labels

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
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
MAX_ID_CHARS = 200  # ids name files (<id>.h5): stay well below 255-byte file names


@dataclass(frozen=True)
class Item:
    """A dataset entry as an adapter sees it (before probing)."""

    video_id: str
    media_path: str
    split: str
    speaker: str
    label_file: str = ""  # per-frame label file, or ""
    clip_label: str = ""  # one class name for the whole clip, or ""
    source: str = ""  # the file the item was read from, for messages ("" = media_path)
    line: int = 0  # its line in ``source`` (csv tables), or 0


@dataclass(frozen=True)
class ManifestRow:
    """One row of ``manifest.csv`` (paths as given to the stage, usually repo-relative)."""

    video_id: str
    media_path: str
    split: str
    speaker: str
    label_file: str
    clip_label: str
    duration_s: float
    has_video: bool
    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate_hz: int
    modality: str  # audio_video | video (no audio track) | audio (no video) | image
    label_frames: int  # frames in the label file (0 for clip labels)


class Report:
    """Collects per-file warnings and errors for ``manifest_report.json``.

    ``modalities`` counts the usable rows per modality (set by :func:`build_manifest`).
    """

    def __init__(self) -> None:
        self.warnings: list[dict[str, str]] = []
        self.errors: list[dict[str, str]] = []
        self.modalities: dict[str, int] = {}

    def warn(self, path: str | Path, problem: str, action: str) -> None:
        log.warning("%s: %s (%s)", path, problem, action)
        self.warnings.append({"file": str(path), "problem": problem, "action": action})

    def error(self, path: str | Path, problem: str) -> None:
        log.error("%s: %s", path, problem)
        self.errors.append({"file": str(path), "problem": problem})


# --------------------------------------------------------------------------- adapters


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
    overlap = sorted(set(dev_speakers) & set(test_speakers))
    if overlap:
        raise PipelineError(
            f"build_manifest: speakers {overlap} are in both dev_speakers and test_speakers"
        )
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
        split = (
            "dev" if speaker in dev_speakers else "test" if speaker in test_speakers else "train"
        )
        items.append(Item(f.stem, str(f), split, speaker, clip_label=label))
    return items


def adapter_items(adapter: str, root: Path, cfg, report: Report) -> list[Item]:
    """The items of the dataset under ``root`` read by ``adapter`` (``build_manifest`` params
    ``cfg``: csv_file, crema_media, split_fractions, dev/test speakers, base classes, seed)."""
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


def id_problem(video_id: str) -> str:
    """Why ``video_id`` is unsafe as a file name and HDF5 group name, or ``""`` if it is safe.

    Safe: letters and digits (any script), ``_``, ``-`` and ``.``, not starting with ``.``,
    at most :data:`MAX_ID_CHARS` characters. That rules out path separators, ``..``, spaces
    and control characters. The check runs on the NFC form (composed accents).
    """
    if not video_id:
        return "empty"
    nfc = unicodedata.normalize("NFC", video_id)
    bad = sorted({ch for ch in nfc if not (ch.isalnum() or ch in "_-.")})
    if bad:
        return f"holds {''.join(bad)!r} (allowed: letters, digits, '_', '-', '.')"
    if nfc.startswith("."):
        return "starts with '.'"
    if len(nfc) > MAX_ID_CHARS:
        return f"longer than {MAX_ID_CHARS} characters"
    return ""


def id_key(video_id: str) -> str:
    """``video_id`` as case-insensitive file systems compare names (NFC, then casefold)."""
    return unicodedata.normalize("NFC", video_id).casefold()


def check_ids(items: list[Item], report: Report) -> None:
    """Refuse unsafe ids and ids equal up to :func:`id_key`, naming the row of each.

    Raises
    ------
    PipelineError
        At least one problem; all of them are in the report's errors.
    """

    def where(it: Item) -> str:
        src = it.source or it.media_path
        return f"{src} line {it.line}" if it.line else src

    problems: list[tuple[Item, str]] = []
    first: dict[str, Item] = {}
    for it in items:
        why = id_problem(it.video_id)
        if why:
            problems.append((it, f"unsafe video id {it.video_id!r}: {why}"))
            continue
        other = first.setdefault(id_key(it.video_id), it)
        if other is it:
            continue
        if other.video_id == it.video_id:
            problems.append((it, f"duplicate video id {it.video_id!r} (first: {where(other)})"))
        else:
            problems.append(
                (
                    it,
                    (
                        f"video id {it.video_id!r} collides with {other.video_id!r} "
                        f"({where(other)}) on case-insensitive file systems"
                    ),
                )
            )
    for it, problem in problems:
        at = f"line {it.line}: " if it.line else ""
        report.error(it.source or it.media_path, at + problem)
    if problems:
        it, problem = problems[0]
        more = f" (and {len(problems) - 1} more; see manifest_report.json)" if problems[1:] else ""
        raise PipelineError(
            f"{where(it)}: {problem}{more}; video ids name files and HDF5 "
            "groups: safe names, unique ignoring case"
        )


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


# --------------------------------------------------------------------------- building


def _probe(path: str) -> MediaInfo | DataError:
    try:
        return probe(path)
    except DataError as err:
        return err


def no_stream(row: ManifestRow, kind: str) -> str:
    """Why ``row`` has no ``kind`` stream (``"video"`` or ``"audio"``), or ``""`` if it has one.

    Stages that need that stream skip the row with this reason, e.g. ``"no video stream
    (modality audio)"``; their features then give it no windows.
    """
    if kind == "video":
        return "" if row.has_video else f"no video stream (modality {row.modality})"
    if kind == "audio":
        return "" if row.has_audio else f"no audio track (modality {row.modality})"
    raise ValueError(f"kind must be 'video' or 'audio', got {kind!r}")


def build_manifest(
    items: list[Item],
    *,
    task: str,
    classes: tuple[str, ...],
    max_label_mismatch_s: float,
    n_jobs: int,
    report: Report,
) -> list[ManifestRow]:
    """Probe every item's media and check its labels; returns usable rows sorted by id.

    Raises
    ------
    PipelineError
        Unsafe or colliding ids, label headers outside ``classes``, no usable video, or an
        empty train/dev split (see module docstring).
    """
    check_ids(items, report)
    items = sorted(items, key=lambda i: i.video_id)
    unique_media = sorted({i.media_path for i in items})
    infos = dict(
        zip(unique_media, Parallel(n_jobs=n_jobs)(delayed(_probe)(m) for m in unique_media))
    )
    wanted = [c.lower() for c in classes]
    rows = []
    for it in items:
        info = infos[it.media_path]
        if isinstance(info, DataError):
            report.warn(info.path, info.problem, "skipped")
            continue
        media = asdict(info)
        if media.pop("partly_decodable"):
            report.warn(it.media_path, info.partly_decodable, "kept: decoded part used")
        label_frames = 0
        if it.label_file:
            try:
                if task == "expr":
                    label_frames = len(read_expr_labels(it.label_file, classes))
                else:
                    label_frames = len(read_va_labels(it.label_file))
            except DataError as err:
                if "not in base.classes" in err.problem:
                    report.error(err.path, err.problem)
                    raise
                report.warn(err.path, err.problem, "skipped")
                continue
            if info.has_video:
                diff_s = (label_frames - info.n_frames) / info.fps
                if abs(diff_s) > max_label_mismatch_s:
                    report.warn(
                        it.label_file,
                        f"{label_frames} label lines for {info.n_frames} video "
                        f"frames ({diff_s:+.2f} s, tolerance {max_label_mismatch_s} s)",
                        "skipped",
                    )
                    continue
                if label_frames != info.n_frames:
                    what = "shorter" if label_frames < info.n_frames else "longer"
                    report.warn(
                        it.label_file,
                        f"{what} than its video ({label_frames} vs {info.n_frames} frames)",
                        "kept: missing frames unannotated, extra lines ignored",
                    )
        elif it.clip_label:
            if task != "expr":
                report.warn(it.media_path, "clip labels are categorical; task is va", "skipped")
                continue
            if it.clip_label.lower() not in wanted:
                report.warn(
                    it.media_path,
                    f"clip label {it.clip_label!r} is not in base.classes",
                    "skipped",
                )
                continue
        else:
            report.warn(it.media_path, "no label", "skipped")
            continue
        if info.modality == "image":
            report.warn(
                it.media_path,
                "still image (modality image): one frame, no audio track",
                "kept: audio features give it no windows",
            )
        elif not info.has_audio:
            report.warn(
                it.media_path,
                "no audio track (modality video)",
                "kept: audio features give it no windows",
            )
        rows.append(
            ManifestRow(
                it.video_id,
                it.media_path,
                it.split,
                it.speaker,
                it.label_file,
                it.clip_label.lower(),
                label_frames=label_frames,
                **media,
            )
        )
    if not rows:
        raise PipelineError("no usable video in the dataset; see manifest_report.json for why")
    report.modalities = dict(sorted(Counter(r.modality for r in rows).items()))
    if any(r.has_video for r in rows):
        for r in rows:
            if r.modality == "audio":
                report.warn(
                    r.media_path,
                    "audio only: no video stream (modality audio) in a dataset with video",
                    "kept: face features give it no windows",
                )
    per_split = Counter(r.split for r in rows)
    for split in ("train", "dev"):
        if per_split[split] == 0:
            raise PipelineError(
                f"split {split!r} is empty: {split} videos are needed "
                f"({dict(per_split)} usable videos per split)"
            )
    if per_split["test"] == 0:
        report.warn("(dataset)", "split 'test' is empty", "kept: evaluation reports dev only")
    splits_of: dict[str, set[str]] = {}
    for r in rows:
        splits_of.setdefault(r.speaker, set()).add(r.split)
    for speaker, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            report.warn(
                f"(speaker {speaker})",
                f"speaker {speaker!r} is in several splits {sorted(splits)}: dev and "
                "test scores are not speaker-independent",
                "kept (strict: true stops here)",
            )
    return rows


def write_manifest(dst: str | Path, rows: list[ManifestRow]) -> None:
    """Write rows as CSV with a fixed column order (stable bytes)."""
    names = [f.name for f in fields(ManifestRow)]
    with open(dst, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=names, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read ``manifest.csv`` back into typed rows (sorted by id, as written).

    Raises
    ------
    DataError
        No manifest, not one written by :func:`write_manifest`, or (hand-edited) an unsafe
        or colliding video id or an unknown modality; the message names the line.
    """
    casts = {
        "duration_s": float,
        "fps": float,
        "n_frames": int,
        "width": int,
        "height": int,
        "audio_rate_hz": int,
        "label_frames": int,
        "has_video": lambda s: s == "True",
        "has_audio": lambda s: s == "True",
    }
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [
                ManifestRow(**{k: casts.get(k, str)(v) for k, v in r.items()})
                for r in csv.DictReader(fh)
            ]
    except FileNotFoundError:
        raise DataError(path, "manifest not found (run build_manifest)") from None
    except (TypeError, ValueError) as err:
        raise DataError(path, f"not a manifest written by build_manifest ({err})") from None
    seen: dict[str, int] = {}
    for n, r in enumerate(rows, start=2):
        why = id_problem(r.video_id)
        if why:
            raise DataError(
                path, f"line {n}: unsafe video id {r.video_id!r}: {why} (re-run build_manifest)"
            )
        first = seen.setdefault(id_key(r.video_id), n)
        if first != n:
            raise DataError(
                path,
                f"line {n}: video id {r.video_id!r} repeats line {first} "
                "(ids must be unique ignoring case)",
            )
        if r.modality not in MODALITIES:
            raise DataError(path, f"line {n}: modality {r.modality!r} is not one of {MODALITIES}")
    return rows
