"""The GPU benchmark script runs end to end (``--quick`` on the CPU), so that a session with a GPU
spends its device time measuring, not debugging the script."""

from __future__ import annotations

import json
import sys

from tests.benchmarks import bench_gpu


def test_quick_run_on_cpu_writes_every_figure(crema_videos, tmp_path, monkeypatch):
    out = tmp_path / "gpu.json"
    clip = next(p for p in crema_videos if "HAP" in p.name)
    argv = ["bench_gpu", "--device", "cpu", "--quick", "--clip", str(clip), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    bench_gpu.main()
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["quick"] is True
    det = res["detection_720p"]
    assert set(det["frames_per_s_by_batch"]) == {"1", "4"}
    assert all(v > 0 for v in det["frames_per_s_by_batch"].values())
    assert det["found_rate"] == 1.0  # every 720p frame of the clip shows the actor's face
    emb = res["embeddings"]["faces_per_s_by_batch"]
    assert set(emb) == {"fer_xception", "vggface2_resnet50"}
    assert all(v > 0 for per_batch in emb.values() for v in per_batch.values())
    train = res["training"]
    assert train["lstm_epoch_s"] > 0 and train["finetune_epoch_s_per_1000_faces"] > 0
    assert train["lstm_epoch_s_affwild2"] > train["lstm_epoch_s"]  # scaled up to 46,000 windows
