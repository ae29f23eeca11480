"""Stage `separate_vocals`: Spleeter 2stems vocals of every extracted audio track.

Reads  data/interim/manifest.csv, data/interim/audio/<video_id>.h5,
       models/pretrained/spleeter/2stems (checked file by file); params base.n_jobs,
       separate_vocals
Writes data/interim/vocals/<video_id>.h5 (wave [S] at the audio rate),
       data/interim/vocals_report.json
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipeline import pretrained
from pipeline.audio import separate
from pipeline.cli import stage_cli
from pipeline.data.manifest import read_manifest
from pipeline.embed.device import tensorflow_device
from pipeline.io.per_video import VideoJob, code_digest, run_and_report, runtime
from pipeline.params import load_params


@stage_cli
def main(
    manifest: Path,
    audio: Path,
    model: Path,
    dst: Path,
    report: Path,
    params: Path = Path("params.yaml"),
) -> None:
    """Separate the vocals of every video that has an audio track."""
    cfg = load_params("separate_vocals", params)
    if cfg.method == "spleeter":
        pretrained.verify_checkpoint("spleeter_2stems", model)  # fail before any work
    jobs = [
        VideoJob(r.video_id, (audio / f"{r.video_id}.h5",), dst / f"{r.video_id}.h5")
        for r in read_manifest(manifest)
        if (audio / f"{r.video_id}.h5").exists()
    ]
    settings = {"method": cfg.method, "chunk_s": cfg.chunk_s, "overlap_s": cfg.overlap_s}
    spleeter = cfg.method == "spleeter"
    device = tensorflow_device() if spleeter else "cpu"
    packages = ["numpy"] + (["spleeter-thomasesr", "tensorflow"] if spleeter else [])
    run_and_report(
        jobs,
        partial(separate.separate_vocals_job, model_dir=str(model), **settings),
        report_path=report,
        out_dir=dst,
        params=settings,
        code=code_digest([separate, pretrained]),
        n_jobs=cfg.n_jobs,
        executor=cfg.executor,
        scheduler=cfg.dask_scheduler,
        desc="separate_vocals",
        runtime=runtime(packages, device),
    )


if __name__ == "__main__":
    main()
