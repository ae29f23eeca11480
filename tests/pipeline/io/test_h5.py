"""HDF5 contract: round trip, sorted groups, reproducible bytes, atomic writes."""

import hashlib

import h5py
import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.io import h5


def _groups(rng):
    return {
        vid: {
            "t": np.arange(n) / 5.0,
            "x": rng.standard_normal((n, 8)).astype(np.float32),
            "valid": rng.random(n) > 0.2,
        }
        for vid, n in [("b", 7), ("a", 3), ("c", 20000)]
    }


def test_round_trip_attrs_and_sorted_order(tmp_path):
    rng = np.random.default_rng(0)
    groups = _groups(rng)
    dst = tmp_path / "emb.h5"
    h5.write_h5(
        dst,
        groups,
        stage="embed",
        params_digest="abc",
        rate_hz=5.0,
        dim=8,
        model="m",
        extra={"k": [1, 2]},
    )
    with h5py.File(dst) as f:
        assert list(f.keys()) == ["a", "b", "c"]
        assert f["c/x"].compression == "lzf"  # large payload compressed
    attrs = h5.read_attrs(dst)
    assert (
        attrs["stage"] == "embed" and attrs["rate_hz"] == 5.0 and attrs["extra"] == {"k": [1, 2]}
    )
    for vid, arrays in h5.iter_groups(dst):
        for name, arr in arrays.items():
            np.testing.assert_array_equal(arr, groups[vid][name])
            assert arr.dtype == groups[vid][name].dtype
    assert set(h5.read_group(dst, "a", ["x"])) == {"x"}


def test_same_inputs_give_identical_bytes(tmp_path):
    digests = []
    for k in range(2):
        dst = tmp_path / f"{k}.h5"
        groups = _groups(np.random.default_rng(1))
        # different insertion order, same content
        h5.write_h5(dst, dict(reversed(list(groups.items()))), stage="s", params_digest="d")
        digests.append(hashlib.sha256(dst.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_interrupted_write_leaves_no_file_and_keeps_old_output(tmp_path):
    dst = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with h5.open_writer(dst, stage="s") as w:
            w.add("a", x=np.zeros(3))
            raise RuntimeError("killed midway")
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind either
    h5.write_h5(dst, {"a": {"x": np.ones(2)}}, stage="s")
    before = dst.read_bytes()
    with pytest.raises(RuntimeError):
        with h5.open_writer(dst, stage="s") as w:
            w.add("a", x=np.zeros(3))
            raise RuntimeError("killed midway")
    assert dst.read_bytes() == before


def test_groups_must_come_in_sorted_order(tmp_path):
    with pytest.raises(ValueError, match="sorted order"):
        with h5.open_writer(tmp_path / "x.h5") as w:
            w.add("b", x=np.zeros(1))
            w.add("a", x=np.zeros(1))


def test_is_fresh_checks_digest_and_corruption(tmp_path):
    dst = tmp_path / "v.h5"
    assert not h5.is_fresh(dst, "d1")
    h5.write_h5(dst, {"a": {"x": np.zeros(2)}}, params_digest="d1")
    assert h5.is_fresh(dst, "d1") and not h5.is_fresh(dst, "d2")
    dst.write_bytes(dst.read_bytes()[:100])  # truncated
    assert not h5.is_fresh(dst, "d1")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        h5.read_attrs(dst)


def test_missing_group_or_file_is_a_clear_error(tmp_path):
    dst = tmp_path / "v.h5"
    h5.write_h5(dst, {"a": {"x": np.zeros(2)}})
    with pytest.raises(DataError, match="no group for video 'zz'"):
        h5.read_group(dst, "zz")
    with pytest.raises(DataError, match="lacks datasets"):
        h5.read_group(dst, "a", ["x", "valid"])
    with pytest.raises(DataError, match="file not found"):
        h5.read_attrs(tmp_path / "none.h5")


def test_reader_reads_every_group_and_its_attrs_through_one_open(tmp_path, monkeypatch):
    dst = tmp_path / "w.h5"
    with h5.open_writer(dst, stage="s", dim=2) as w:
        for i, split in enumerate(["train", "dev", "test"]):
            w.add(f"v{i}", attrs={"split": split, "speaker": i}, x=np.full((i, 2), i, np.float32))
    opened = []
    real_file = h5py.File
    monkeypatch.setattr(h5.h5py, "File", lambda *a, **k: opened.append(a[0]) or real_file(*a, **k))
    got = list(h5.iter_groups_with_attrs(dst))
    assert [vid for vid, _, _ in got] == ["v0", "v1", "v2"]
    assert [a for _, _, a in got] == [
        {"split": "train", "speaker": 0},
        {"split": "dev", "speaker": 1},
        {"split": "test", "speaker": 2},
    ]
    np.testing.assert_array_equal(got[2][1]["x"], np.full((2, 2), 2, np.float32))
    assert len(opened) == 1  # not one open per group: image corpora have 30,000 groups
    with h5.open_reader(dst) as r:
        assert r.attrs == {"stage": "s", "dim": 2} and r.ids() == ["v0", "v1", "v2"]
        assert r.group_attrs("v1")["split"] == "dev" and set(r.group("v1", ["x"])) == {"x"}
        with pytest.raises(DataError, match="no group for video 'v9'"):
            r.group_attrs("v9")
    assert len(opened) == 2


def test_params_digest_is_order_independent():
    assert h5.params_digest({"a": 1, "b": [1, 2]}) == h5.params_digest({"b": [1, 2], "a": 1})
    assert h5.params_digest({"a": 1}) != h5.params_digest({"a": 2})


def test_streamed_group_appends_rows_and_is_byte_reproducible(tmp_path):
    from pipeline.io.h5 import open_writer, read_attrs, read_group

    rows = {"t": ((), np.float64), "faces": ((8, 8, 3), np.uint8)}
    rng = np.random.default_rng(0)
    parts = [
        {
            "t": np.arange(k, dtype=np.float64),
            "faces": rng.integers(0, 255, (k, 8, 8, 3), np.uint8),
        }
        for k in (5, 0, 7, 1)
    ]

    def write(dst):
        with open_writer(dst, stage="s") as w:
            app = w.stream("v", rows)
            for p in parts:
                app.append(**p)
            w.set_attrs(report={"frames": app.n})

    write(tmp_path / "a.h5")
    write(tmp_path / "b.h5")
    back = read_group(tmp_path / "a.h5", "v")
    np.testing.assert_array_equal(back["t"], np.concatenate([p["t"] for p in parts]))
    np.testing.assert_array_equal(back["faces"], np.concatenate([p["faces"] for p in parts]))
    assert read_attrs(tmp_path / "a.h5")["report"] == {"frames": 13}
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_streamed_chunks_hold_at_most_the_expected_rows(tmp_path):
    """With ``expected_rows`` a short group's small datasets take about the bytes of their
    rows; without it each takes a whole 1 MiB chunk. More rows than expected still append."""
    from pipeline.io.h5 import open_writer, read_group

    rows = {"t": ((), np.float64), "valid": ((), np.bool_)}
    parts = [np.arange(k, dtype=np.float64) for k in (3, 4, 5)]  # 12 rows

    def write(dst, expected):
        with open_writer(dst) as w:
            app = w.stream("v", rows, expected_rows=expected)
            for t in parts:
                app.append(t=t, valid=t > 1)

    write(tmp_path / "sized.h5", 4)
    write(tmp_path / "default.h5", None)
    with h5py.File(tmp_path / "sized.h5") as f:
        assert f["v/t"].chunks == (4,) and f["v/valid"].chunks == (4,)
        assert f["v/t"].id.get_storage_size() == 3 * 4 * 8  # 3 chunks of 4 float64
        assert f["v/valid"].id.get_storage_size() == 3 * 4
    with h5py.File(tmp_path / "default.h5") as f:
        assert f["v/t"].id.get_storage_size() == 1 << 20
    back = read_group(tmp_path / "sized.h5", "v")
    np.testing.assert_array_equal(back["t"], np.concatenate(parts))
    np.testing.assert_array_equal(back["valid"], np.concatenate(parts) > 1)
    for name, values in read_group(tmp_path / "default.h5", "v").items():
        np.testing.assert_array_equal(back[name], values, err_msg=name)


def test_streamed_group_refuses_ragged_or_partial_appends(tmp_path):
    from pipeline.io.h5 import open_writer

    with open_writer(tmp_path / "a.h5") as w:
        app = w.stream("v", {"t": ((), np.float64), "x": ((2,), np.float32)})
        with pytest.raises(ValueError, match="exactly"):
            app.append(t=np.zeros(3))
        with pytest.raises(ValueError, match="row counts"):
            app.append(t=np.zeros(3), x=np.zeros((2, 2), np.float32))


def test_read_rows_yields_the_requested_rows_in_chunks(tmp_path):
    from pipeline.io.h5 import read_rows, write_h5

    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    write_h5(tmp_path / "a.h5", {"v": {"x": x}})
    rows = np.array([0, 3, 4, 17, 30, 49])
    got = list(read_rows(tmp_path / "a.h5", "v", "x", rows, chunk=4))
    assert [len(i) for i, _ in got] == [4, 2]
    np.testing.assert_array_equal(np.concatenate([i for i, _ in got]), rows)
    np.testing.assert_array_equal(np.concatenate([v for _, v in got]), x[rows])
    assert list(read_rows(tmp_path / "a.h5", "v", "x", np.zeros(0, int))) == []
