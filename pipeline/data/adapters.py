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
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.data.manifest import SPLITS, Item, Report
from pipeline.errors import PipelineError

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
