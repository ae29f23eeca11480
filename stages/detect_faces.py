"""Stage `detect_faces`: per video, sample frames, detect and track the main face, align it.

Reads  data/interim/manifest.csv and the media it lists; params base.device (mtcnn_torch),
       base.n_jobs, base.executor, base.dask_scheduler, detect_faces
Writes data/interim/faces/<video_id>.h5 (t, frame_index, faces, boxes, landmarks, scores,
       valid; per-video reuse; image rows with detect_faces.images aligned: the image itself,
       resized, no detection), data/interim/faces_report.json (frames and found rate; rows
       without a video stream: "skipped" with the reason)
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data import media
from pipeline.data.manifest import no_stream, read_manifest
from pipeline.io.per_video import VideoJob, code_digest, run_and_report, runtime
from pipeline.params import load_params
from pipeline.video import align, detectors, faces, track


@stage_cli
def main(manifest: Path, dst: Path, report: Path, params: Path = Path("params.yaml")) -> None:
    """Detect and align faces for every video in the manifest."""
    cfg = load_params("detect_faces", params)
    face_cfg = cfg.face_config()
    jobs = [
        VideoJob(
            r.video_id,
            (Path(r.media_path),),
            dst / f"{r.video_id}.h5",
            {
                "fps": r.fps,
                "duration_s": r.duration_s,
                "skip": no_stream(r, "video"),
                "image": r.modality == "image",
            },
        )
        for r in read_manifest(manifest)
    ]
    device, packages = faces.detector_runtime(face_cfg)
    # the device enters the digests through runtime(); base.device itself ('auto' or the
    # device named) is left out, so naming the device that auto picks reuses outputs
    digested = {k: v for k, v in asdict(face_cfg).items() if k != "device"}
    run_and_report(
        jobs,
        partial(faces.detect_faces_job, cfg=face_cfg),
        report_path=report,
        out_dir=dst,
        params=digested,
        code=code_digest([faces, align, detectors, track, media]),
        n_jobs=cfg.n_jobs,
        executor=cfg.executor,
        scheduler=cfg.dask_scheduler,
        desc="detect_faces",
        runtime=runtime(packages, device),
    )


if __name__ == "__main__":
    main()
