"""Run the pipeline with a dataset's settings: ``python configs/run.py configs/<dataset>.yaml``.

A settings file holds params.yaml overrides (same sections and keys) plus ``targets`` (the
stages to reproduce; default: all). This script turns them into ``dvc exp run -S ...`` and
runs it, so the experiment is recorded like any other (``dvc exp show``, ``dvc metrics
diff``) and params.yaml afterwards holds the dataset's values. Arguments after the file go
to ``dvc exp run`` unchanged, and a later ``-S`` wins, e.g.::

    python configs/run.py configs/emodb.yaml -S build_manifest.root=/data/emodb
    python configs/run.py configs/emodb.yaml --print     # show the command only

Mappings listed in ``REPLACE`` (name -> item tables that DVC's foreach iterates) replace
the whole mapping of params.yaml; every other mapping is merged key by key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPLACE = {
    "window_stats.features",
    "embed_faces.backbones",
    "embed_audio.backbones",
    "fit_fusion_net.nets",
    "make_demo.split_counts",
    "build_manifest.split_fractions",
    "finetune_faces.thinning",
}


def hydra_value(value: Any) -> str:
    """``value`` in the override grammar ``dvc exp run -S`` reads (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    return json.dumps(value)  # null, true/false, numbers, "quoted strings"


def overrides(settings: dict[str, Any], prefix: str = "") -> list[str]:
    """``-S`` values for every leaf of ``settings`` (whole values for ``REPLACE`` keys)."""
    out = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if name in REPLACE:
            out += [f"~{name}", f"+{name}={hydra_value(value)}"]
        elif isinstance(value, dict):
            out += overrides(value, f"{name}.")
        else:
            out.append(f"{name}={hydra_value(value)}")
    return out


def command(path: Path, extra: list[str]) -> list[str]:
    """The ``dvc exp run`` command line for settings file ``path``."""
    settings = yaml.safe_load(path.read_text()) or {}
    targets = settings.pop("targets", [])
    cmd = [sys.executable, "-m", "dvc", "exp", "run"]
    for item in overrides(settings):
        cmd += ["-S", item]
    return cmd + extra + list(targets)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__)
        return 2
    extra = [a for a in argv[1:] if a != "--print"]
    cmd = command(Path(argv[0]), extra)
    if "--print" in argv:
        print(" ".join(cmd))
        return 0
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
