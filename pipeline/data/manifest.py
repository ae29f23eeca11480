"""Build the dataset manifest: one row per video, from any dataset through an adapter.

Adapters (:mod:`pipeline.data.adapters`) turn a dataset's own layout into :class:`Item` s
(id, media, labels, split, speaker). :func:`build_manifest` then probes every media file with
PyAV and checks labels. This module does not import the adapters: the stages after
``build_manifest`` import it to read the manifest, and the code digest of their per-video
outputs covers every module they import, so an adapter change must not invalidate them.

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
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from joblib import Parallel, delayed

from pipeline.data.media import MODALITIES, MediaInfo, probe
from pipeline.errors import DataError, PipelineError
from pipeline.labels.files import read_expr_labels, read_va_labels

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
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
    # A modality the whole dataset lacks (images of FER-2013, audio of EmoDB) is no news per
    # row: rows are warned about only when other rows have it.
    without_audio = {
        "image": "still image (modality image): one frame, no audio track",
        "video": "no audio track (modality video)",
    }
    if any(r.has_audio for r in rows):
        for r in rows:
            if r.modality in without_audio:
                report.warn(
                    r.media_path,
                    without_audio[r.modality],
                    "kept: audio features give it no windows",
                )
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
