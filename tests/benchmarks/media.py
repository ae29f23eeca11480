"""Long test videos for the benchmarks, built from real CREMA-D clips.

The way ../shared/tools/make_long_video.py builds its 1080p video (each clip's frames upscaled,
letterboxed, looped; 25 fps; x264 ultrafast), at 720p and with sound: the clips' audio looped
alongside (AAC mono, 44.1 kHz), optionally with the demo's synthetic music under it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE, FPS, AUDIO_RATE = (1280, 720), 25, 44100


def make_720p(
    srcs: Path | list[Path],
    seconds: int,
    dst: Path,
    music_snr_db: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Write ``seconds`` of 1280x720 video at 25 fps cycling through the clips ``srcs``.

    Parameters
    ----------
    srcs : one clip or a list; frames play one clip after the other, looped
    seconds : length of the video (s)
    dst : the .mp4 to write
    music_snr_db : speech-to-music ratio (dB) of ``pipeline.data.demo.background_track`` music
        mixed under the looped speech; None = speech only
    seed : seed of the music

    Returns
    -------
    clip_of_frame : [seconds * 25] int, the index in ``srcs`` of the clip each frame shows
        (a per-frame label source)
    """
    import av
    import cv2

    from pipeline.data.demo import background_track
    from pipeline.data.media import iter_video_frames, read_audio

    srcs = [srcs] if isinstance(srcs, Path) else list(srcs)
    w, h = SIZE
    inner = (h * 4 // 3, h)  # 4:3 clip -> 960 x 720
    pad = (w - inner[0]) // 2
    frames, owner = [], []
    for k, src in enumerate(srcs):
        for _, _, rgb in iter_video_frames(src):
            frames.append(np.pad(cv2.resize(rgb, inner), ((0, 0), (pad, pad), (0, 0))))
            owner.append(k)
    wave = np.concatenate([read_audio(src, AUDIO_RATE)[0] for src in srcs])
    n_audio, n_frames = seconds * AUDIO_RATE, seconds * FPS
    audio = np.resize(wave, n_audio).astype(np.float32)  # np.resize repeats the clips
    if music_snr_db is not None:
        rms = float(np.sqrt(np.mean(wave**2)))
        music = background_track(np.random.default_rng(seed), n_audio, AUDIO_RATE)
        audio = audio + music * rms * 10 ** (-music_snr_db / 20)
        audio /= max(1.0, float(np.abs(audio).max()) / 0.99)  # no clipping
    with av.open(str(dst), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "30"}
        aus = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frames[i % len(frames)], format="rgb24")
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        for k in range(0, n_audio, 1024):
            af = av.AudioFrame.from_ndarray(audio[None, k : k + 1024], format="flt", layout="mono")
            af.sample_rate, af.pts = AUDIO_RATE, k
            out.mux(aus.encode(af))
        out.mux(aus.encode())
    return np.resize(np.array(owner), n_frames)
