"""Demo composer on the real CREMA-D clips: timelines, labels and reproducible bytes."""

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

from pipeline.data import demo
from pipeline.data.media import probe
from pipeline.labels.files import read_expr_labels

CFG = SimpleNamespace(
    duration_s=(5.0, 6.0),
    gap_prob=0.3,
    gap_s=(0.4, 0.8),
    brightness=(0.8, 1.2),
    scale=(0.9, 1.1),
    shift_px=8,
    gain_db=(-6.0, 3.0),
)


@pytest.fixture(scope="module")
def clips(crema_videos):
    return [demo.load_clip(p, 16000) for p in crema_videos[:3]]


def test_load_clip_decodes_frames_and_audio(clips):
    c = clips[0]
    assert (
        c.label == "anger" and c.frames.dtype == np.uint8 and c.frames.shape[1:] == (360, 480, 3)
    )
    assert c.fps == pytest.approx(29.97, abs=0.01)
    assert abs(len(c.audio) / c.audio_rate_hz - c.duration_s) < 0.15


def test_plan_is_seeded_and_within_duration(clips):
    a = demo.plan_video(np.random.default_rng(1), clips, CFG)
    b = demo.plan_video(np.random.default_rng(1), clips, CFG)
    assert a == b
    total = a[-1].start_s + a[-1].duration_s
    assert CFG.duration_s[0] <= total < CFG.duration_s[1] + max(c.duration_s for c in clips)
    assert a[0].clip >= 0  # a video never starts with a gap
    for s, nxt in zip(a, a[1:]):
        assert nxt.start_s == pytest.approx(s.start_s + s.duration_s)


def test_render_labels_follow_the_timeline_and_bytes_repeat(tmp_path, clips):
    segs = [
        demo.Segment(0.0, clips[1].duration_s, 1),
        demo.Segment(clips[1].duration_s, 0.6, -1),
        demo.Segment(
            clips[1].duration_s + 0.6, clips[2].duration_s, 2, brightness=1.2, scale=0.95
        ),
    ]
    digests = []
    for k in range(2):
        out = tmp_path / f"v{k}.mp4"
        labels = demo.render_video(out, segs, clips, 25.0, np.random.default_rng(0), 10.0, 16000)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    info = probe(out)
    assert info.n_frames == len(labels) and info.fps == 25.0 and info.has_audio
    names = list(demo.CREMA_CLASSES.values())
    t = np.arange(len(labels)) / 25.0
    gap = (t >= segs[1].start_s) & (t < segs[2].start_s)
    assert (labels[gap] == -1).all()
    assert (labels[t < segs[1].start_s] == names.index(clips[1].label)).all()
    assert (labels[t >= segs[2].start_s] == names.index(clips[2].label)).all()
    lf = tmp_path / "v.txt"
    demo.write_label_file(lf, labels)
    classes = ("neutral", "anger", "disgust", "fear", "happiness", "sadness")
    np.testing.assert_array_equal(read_expr_labels(lf, classes), labels)


def test_va_labels_follow_the_circumplex_and_gaps_are_unannotated(clips, tmp_path):
    from pipeline.labels.files import read_va_labels

    segs = [demo.Segment(0.0, 1.0, 0), demo.Segment(1.0, 0.5, -1), demo.Segment(1.5, 1.0, 1)]
    va = demo.va_labels(segs, clips, 75, 30.0, np.random.default_rng(0))
    assert (va[30:45] == -5).all()  # the gap
    for seg, rows in ((segs[0], slice(0, 30)), (segs[2], slice(45, 75))):
        target = np.array(demo.CIRCUMPLEX[clips[seg.clip].label])
        assert np.abs(va[rows] - target).max() <= 0.15 + 1e-6 and (va[rows] == va[rows][0]).all()
    demo.write_va_file(tmp_path / "v.txt", va)
    back = read_va_labels(tmp_path / "v.txt")
    assert np.isnan(back[30:45]).all() and np.allclose(back[:30], va[:30], atol=1e-3)
