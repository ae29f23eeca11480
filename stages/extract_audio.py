"""Stage `extract_audio`: per video, the audio track as mono 16 kHz (videos without one skipped).

Reads  data/interim/manifest.csv and the media it lists; params base.n_jobs, extract_audio
Writes data/interim/audio/<video_id>.h5 (wave [S], attrs rate_hz, orig_rate_hz),
       data/interim/audio_report.json (per video: seconds, or "skipped: no audio track")
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from pipeline.audio import extract
from pipeline.cli import stage_cli
from pipeline.data import media
from pipeline.data.manifest import no_stream, read_manifest
from pipeline.io.per_video import VideoJob, code_digest, run_and_report, runtime
from pipeline.params import load_params


@stage_cli
def main(manifest: Path, dst: Path, report: Path, params: Path = Path("params.yaml")) -> None:
    """Decode and resample the audio of every video in the manifest."""
    cfg = load_params("extract_audio", params)
    jobs = [
        VideoJob(
            r.video_id,
            (Path(r.media_path),),
            dst / f"{r.video_id}.h5",
            {"skip": no_stream(r, "audio")},
        )
        for r in read_manifest(manifest)
    ]
    run_and_report(
        jobs,
        partial(extract.extract_audio_job, rate_hz=cfg.rate_hz),
        report_path=report,
        out_dir=dst,
        params={"rate_hz": cfg.rate_hz},
        code=code_digest([extract, media]),
        n_jobs=cfg.n_jobs,
        executor=cfg.executor,
        scheduler=cfg.dask_scheduler,
        desc="extract_audio",
        runtime=runtime(["av", "librosa", "numpy", "soxr"]),
    )


if __name__ == "__main__":
    main()
