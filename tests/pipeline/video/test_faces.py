"""Face detection, tracking and alignment on real CREMA-D clips and on edge cases."""

import numpy as np
import pytest

from pipeline.data.media import probe
from pipeline.errors import DataError
from pipeline.video.align import TEMPLATE_112, enlarged_crop, similarity_align
from pipeline.video.detectors import Detection, box_iou
from pipeline.video.faces import face_track, sample_frames
from pipeline.video.track import pick_main_faces

# Measured on the six CREMA-D clips (397 frames): MTCNN (both backends) and dlib found a face
# in 100 %. The test samples 5 fps (about 65 frames): the mtcnn package takes ~0.3 s a frame.
MIN_FOUND_RATE = 0.99


@pytest.mark.parametrize("detector", ["mtcnn", "mtcnn_torch", "dlib"])
def test_real_crema_d_faces_found(crema_videos, face_config, detector):
    total = found = 0
    for path in crema_videos:
        info = probe(path)
        out = face_track(path, info.fps, face_config(detector=detector, size_px=112, fps=5))
        total += len(out["valid"])
        found += int(out["valid"].sum())
        assert (
            out["faces"].shape == (len(out["t"]), 112, 112, 3) and out["faces"].dtype == np.uint8
        )
        ok = out["valid"]
        # the actor's face sits in the middle of the 480x360 frame
        cx = (out["boxes"][ok, 0] + out["boxes"][ok, 2]) / 2
        assert ((cx > 150) & (cx < 330)).all()
        assert np.isfinite(out["landmarks"][ok][:, :3]).all()
    assert found / total >= MIN_FOUND_RATE


def test_video_without_face_keeps_every_slot(tmp_path, make_video, face_config):
    path = make_video(tmp_path / "noface.mp4", n_frames=12, fps=25.0, size=(160, 120))
    out = face_track(path, 25.0, face_config(detector="mtcnn", size_px=64, fps=None))
    assert len(out["t"]) == 12 and not out["valid"].any()
    assert (out["faces"] == 0).all() and np.isnan(out["boxes"]).all()
    np.testing.assert_allclose(out["t"], np.arange(12) / 25.0, atol=1e-3)


@pytest.mark.parametrize("fill", ["zeros", "last"])
def test_frames_without_face_keep_their_slot_with_the_filler(
    crema_videos, tmp_path, make_video, face_config, fill
):
    from pipeline.data.media import iter_video_frames

    real = [rgb for _, _, rgb in iter_video_frames(crema_videos[0])][:3]
    blank = np.full_like(real[0], 90)
    path = make_video(
        tmp_path / "gaps.mp4",
        fps=25.0,
        audio=False,
        frames=[blank, real[0], real[1], blank, blank, real[2]],
    )
    out = face_track(path, 25.0, face_config(detector="mtcnn", size_px=64, fps=None, fill=fill))
    assert out["valid"].tolist() == [False, True, True, False, False, True]
    assert (out["faces"][0] == 0).all()  # nothing to repeat before the first face
    if fill == "zeros":
        assert (out["faces"][3] == 0).all() and (out["faces"][4] == 0).all()
    else:
        np.testing.assert_array_equal(out["faces"][3], out["faces"][2])
        np.testing.assert_array_equal(out["faces"][4], out["faces"][2])
    assert np.isnan(out["scores"][[0, 3, 4]]).all() and (out["scores"][[1, 2, 5]] > 0.9).all()


def test_sampling_keeps_true_timestamps(crema_videos):
    got = [(i, t) for i, t, _ in sample_frames(crema_videos[0], 5.0, 29.97)]
    idx = [i for i, _ in got]
    assert idx[:4] == [0, 6, 12, 18]  # every ~6th frame of 29.97 fps
    ts = np.array([t for _, t in got])
    assert np.allclose(np.diff(ts), 0.2, atol=1 / 29.97)
    assert (
        len([1 for _ in sample_frames(crema_videos[0], None, 29.97)])
        == probe(crema_videos[0]).n_frames
    )


def test_corrupt_video_is_a_clear_error(tmp_path, face_config):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    with pytest.raises(DataError, match=r"broken\.mp4"):
        face_track(bad, 25.0, face_config())


def _det(x, y, side, score=0.99):
    box = np.array([x, y, x + side, y + side], np.float32)
    return Detection(box, score, np.zeros((5, 2), np.float32))


def test_tracking_follows_the_main_person_not_the_largest_face():
    person, passerby = _det(100, 100, 80), _det(300, 50, 120)
    frames = [[person], [passerby, _det(104, 100, 80)], [], [_det(108, 102, 80), passerby]]
    chosen = pick_main_faces(frames, "nearest")
    assert chosen[0] is person and chosen[2] is None
    assert chosen[1].box[0] == 104 and chosen[3].box[0] == 108
    largest = pick_main_faces(frames, "largest")
    assert largest[1] is passerby and largest[3] is passerby


def test_similarity_alignment_maps_landmarks_onto_the_template():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    # landmarks = template rotated by 20 degrees, scaled by 1.5, shifted
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * 1.5
    pts = (TEMPLATE_112 @ rot.T + [90, 40]).astype(np.float32)
    img[:] = 0
    for p in pts:  # bright dots at the landmarks
        img[
            int(round(p[1])) - 1 : int(round(p[1])) + 2,
            int(round(p[0])) - 1 : int(round(p[0])) + 2,
        ] = 255
    out = similarity_align(img, pts, 112)
    for q in TEMPLATE_112:
        assert out[int(round(q[1])), int(round(q[0]))].max() > 100
    five_pt = pts.copy()
    five_pt[3:] = np.nan  # dlib 5-point: no mouth corners
    out2 = similarity_align(img, five_pt, 112)
    q = TEMPLATE_112[0]
    assert out2[int(round(q[1])), int(round(q[0]))].max() > 100


def test_enlarged_crop_is_square_centred_and_30_percent_larger():
    img = np.zeros((200, 200, 3), np.uint8)
    img[50:150, 60:140] = 255  # an 80x100 "face"
    out = enlarged_crop(img, np.array([60, 50, 140, 150]), 130, margin=0.3)
    assert out.shape == (130, 130, 3)
    cols = np.where(out[65, :, 0] > 127)[0]
    rows = np.where(out[:, 65, 0] > 127)[0]
    assert abs(len(rows) - 100) <= 2 and abs(len(cols) - 80) <= 2  # 100 px side -> 130 px crop
    assert abs((rows[0] + rows[-1]) / 2 - 64.5) <= 1


def test_box_iou():
    assert box_iou(
        np.array([0, 0, 10, 10]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])


@pytest.mark.parametrize("detector", ["mtcnn", "dlib"])
def test_rotated_phone_video_faces_found(
    crema_videos, tmp_path, make_video, face_config, detector
):
    """A phone stores an upright face sideways plus a -90 degree display matrix. Measured on 12
    CREMA-D frames stored that way: without applying the matrix MTCNN found 3 faces and dlib
    none; applied, both find all 12."""
    from pipeline.data.media import iter_video_frames

    frames = [rgb for _, _, rgb in iter_video_frames(crema_videos[0])][::6]
    stored = [np.ascontiguousarray(np.rot90(f, 1)) for f in frames]  # turned counter-clockwise
    path = make_video(
        tmp_path / "phone.mp4", fps=25.0, audio=False, frames=stored, rotation_deg=-90
    )
    assert (probe(path).width, probe(path).height) == (480, 360)
    out = face_track(path, 25.0, face_config(detector=detector, size_px=64, fps=None))
    assert len(out["valid"]) == len(frames) and out["valid"].all()


def test_streamed_track_equals_the_whole_track_and_decodes_lazily(
    crema_videos, tmp_path, face_config, monkeypatch
):
    """The stage's streamed HDF5 file holds exactly the in-memory track, and the first chunk
    is produced after decoding about one chunk of frames, not the whole video."""
    import pipeline.video.faces as faces_mod
    from pipeline.io.h5 import read_attrs, read_group
    from pipeline.io.per_video import VideoJob

    path = crema_videos[0]
    cfg = face_config(detector="dlib", size_px=64, fps=None, fill="last", batch_size=3)
    whole = face_track(path, probe(path).fps, cfg)
    assert len(whole["t"]) > 2 * faces_mod.YIELD_ROWS  # several chunks

    decoded = []
    real_sample = faces_mod.sample_frames

    def counting(*args):
        for item in real_sample(*args):
            decoded.append(item[0])
            yield item

    monkeypatch.setattr(faces_mod, "sample_frames", counting)
    first = next(faces_mod.iter_face_track(path, probe(path).fps, cfg))
    assert faces_mod.YIELD_ROWS <= len(first["t"]) < faces_mod.YIELD_ROWS + cfg.batch_size
    assert len(decoded) == len(first["t"])  # nothing decoded ahead of the chunk

    monkeypatch.setattr(faces_mod, "sample_frames", real_sample)
    info = {"fps": probe(path).fps, "duration_s": probe(path).duration_s}
    job = VideoJob("v1", (path,), tmp_path / "v1.h5", info)
    faces_mod.detect_faces_job(job, "digest", cfg)
    back = read_group(job.out, "v1")
    assert sorted(back) == sorted(whole)
    for name in whole:
        np.testing.assert_array_equal(back[name], whole[name], err_msg=name)
    from tests.h5_checks import assert_small_datasets_fit_their_rows

    assert_small_datasets_fit_their_rows(job.out, "v1")
    report = read_attrs(job.out)["report"]
    assert report["frames"] == len(whole["t"]) and report["with_face"] == whole["valid"].sum()


def test_expected_rows_counts_the_sampled_frames():
    """The chunk-size hint: frames on the sampling grid (the lower of the two rates) + 1."""
    from pipeline.video.faces import expected_rows

    assert expected_rows(2.4, 30.0, 5.0) == 13  # 12 samples on a 5 Hz grid, one spare
    assert expected_rows(2.4, 30.0, None) == 73  # every frame
    assert expected_rows(2.4, 2.0, 5.0) == 6  # sampling above the video's rate: every frame
    assert expected_rows(0.0, 30.0, 5.0) is None and expected_rows(2.4, 0.0, 5.0) is None
