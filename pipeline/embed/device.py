"""Device choice for torch models: ``auto`` picks CUDA when torch sees a GPU."""
from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """Map ``auto|cpu|cuda`` to a torch device string; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from pipeline.errors import PipelineError

        raise PipelineError("base.device is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')")
    return device
