"""Probing and decoding edge cases: rotation metadata, truncated files, images, cover art."""

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.data.media import iter_video_frames, probe, quarter_turns, read_audio
from pipeline.errors import DataError


def _picture(w: int = 64, h: int = 48) -> np.ndarray:
    """A non-symmetric RGB picture: red block top-left, green block bottom-right."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[:12, :24] = (230, 30, 30)
    img[-16:, -10:] = (30, 200, 30)
    return img


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_rotated_video_is_decoded_upright(tmp_path, make_video, degrees):
    upright = _picture()
    turns = quarter_turns(degrees)
    stored = np.ascontiguousarray(np.rot90(upright, -turns))  # as a phone stores it
    path = make_video(
        tmp_path / "phone.mp4", frames=[stored] * 4, audio=False, rotation_deg=degrees
    )
    with av.open(str(path)) as c:  # the display matrix really is in the file
        assert next(c.decode(video=0)).rotation == (degrees if degrees != 180 else -180)
    frames = [rgb for _, _, rgb in iter_video_frames(path)]
    assert len(frames) == 4 and frames[0].shape == upright.shape and frames[0].flags.c_contiguous
    err = {
        k: np.abs(np.rot90(frames[0], k).astype(int) - upright).mean()
        for k in range(4)
        if np.rot90(frames[0], k).shape == upright.shape
    }
    assert err[0] < 5 and min(e for k, e in err.items() if k) > 15  # upright, and only upright
    info = probe(path)
    assert (info.width, info.height) == (64, 48)  # as displayed (stored 48 x 64 for +-90)


def test_quarter_turns():
    assert [quarter_turns(d) for d in (0, 90, -90, 180, -180, 270, 88)] == [0, 1, 3, 2, 2, 3, 1]


def _truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def test_truncated_faststart_mp4_is_partly_decodable(tmp_path, make_video, caplog):
    path = make_video(tmp_path / "cut.mp4", n_frames=100, fps=25.0, faststart=True)
    _truncate(path, 0.45)
    info = probe(path)
    assert 10 < info.n_frames < 60 and info.has_audio
    assert info.duration_s == pytest.approx(info.n_frames / 25.0, abs=0.05)  # decoded, not 4.0
    assert info.partly_decodable.startswith(f"partly decodable: {info.n_frames} of ~100 frames (")
    assert f"{info.n_frames / 25:.2f} s of 4.00 s)" in info.partly_decodable
    # the later stages use the same decodable part instead of failing on the cut
    assert sum(1 for _ in iter_video_frames(path)) == info.n_frames
    wave, rate = read_audio(path)
    assert abs(len(wave) / rate - info.duration_s) < 0.2
    assert "audio decoding stopped after" in caplog.text


def test_truncated_plain_mp4_cannot_be_opened(tmp_path, make_video):
    path = make_video(tmp_path / "cut.mp4", n_frames=100, fps=25.0)  # index at the end
    _truncate(path, 0.6)
    with pytest.raises(DataError, match=r"cut\.mp4: cannot be opened as media"):
        probe(path)


def test_whole_file_is_not_flagged(tmp_path, make_video, crema_videos):
    whole = make_video(tmp_path / "ok.mp4", n_frames=30, faststart=True)
    assert probe(whole).partly_decodable == ""
    assert all(probe(p).partly_decodable == "" for p in crema_videos)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_still_image_modality(tmp_path, suffix):
    path = tmp_path / f"face{suffix}"
    Image.fromarray(_picture()).save(path)
    info = probe(path)
    assert info.modality == "image" and info.n_frames == 1 and not info.has_audio
    assert (info.width, info.height) == (64, 48) and info.fps > 0 and info.duration_s > 0


def test_audio_with_cover_picture_is_audio_only(tmp_path):
    path = tmp_path / "song.m4a"
    tone = (0.3 * np.sin(np.arange(16000) / 8)).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        aus = out.add_stream("aac", rate=16000, layout="mono")
        pic = out.add_stream("png")
        pic.width, pic.height, pic.pix_fmt = 64, 48, "rgb24"
        pic.disposition = av.stream.Disposition.attached_pic
        cover = av.VideoFrame.from_ndarray(_picture(), format="rgb24")
        for pkt in [*pic.encode(cover), *pic.encode()]:
            out.mux(pkt)
        for k in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(
                tone[None, k : k + 1024], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, k
            for pkt in aus.encode(frame):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    info = probe(path)
    assert info.modality == "audio" and not info.has_video and info.n_frames == 0
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    with pytest.raises(DataError, match="has no video stream"):
        next(iter_video_frames(path))


def test_modality_of_video_and_audio_files(tmp_path, make_video, shared_data):
    assert probe(make_video(tmp_path / "av.mp4", n_frames=5)).modality == "audio_video"
    assert probe(make_video(tmp_path / "v.mp4", n_frames=5, audio=False)).modality == "video"
    mp3 = min((shared_data / "crema-d-sample" / "AudioMP3").glob("*.mp3"))
    assert probe(mp3).modality == "audio"
