"""Stage `build_manifest`: one table of every usable video (media, probe, labels, split).

Reads  params.yaml: base.seed, base.task, base.classes, base.n_jobs, build_manifest;
       the dataset folder given as --src (= build_manifest.root)
Writes data/interim/manifest.csv, data/interim/manifest_report.json (warnings, errors, and
       the count of usable rows per modality), and --images (data/interim/images): the
       files adapters derive (fer2013: one PNG per row; recola: one per-frame valence/arousal
       file per recording), else empty
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data import manifest as mf
from pipeline.data.adapters import adapter_items
from pipeline.errors import PipelineError
from pipeline.io.atomic import atomic_path, write_json
from pipeline.params import load_params


@stage_cli
def main(
    src: Path,
    dst: Path,
    report: Path,
    images: Path | None = None,
    params: Path = Path("params.yaml"),
) -> None:
    """Probe the dataset under --src and write the manifest and its report."""
    cfg = load_params("build_manifest", params)
    rep = mf.Report()
    try:
        items = adapter_items(cfg.adapter, src, cfg, rep, images)
        rows = mf.build_manifest(
            items,
            task=cfg.task,
            classes=cfg.classes,
            max_label_mismatch_s=cfg.max_label_mismatch_s,
            n_jobs=cfg.n_jobs,
            report=rep,
        )
        if cfg.strict and rep.warnings:
            raise PipelineError(f"strict: {len(rep.warnings)} warnings, e.g. {rep.warnings[0]}")
    except PipelineError as err:
        if not rep.errors:  # a dataset-level stop: list it too (per-file ones already are)
            rep.errors.append(
                {
                    "file": getattr(err, "path", "(dataset)"),
                    "problem": getattr(err, "problem", str(err)),
                }
            )
        raise
    finally:
        write_json(
            report, {"warnings": rep.warnings, "errors": rep.errors, "modalities": rep.modalities}
        )
    with atomic_path(dst) as tmp:
        mf.write_manifest(tmp, rows)
    splits = {s: sum(r.split == s for r in rows) for s in mf.SPLITS}
    mf.log.info(
        "manifest: %d videos %s, %d warnings -> %s", len(rows), splits, len(rep.warnings), dst
    )


if __name__ == "__main__":
    main()
