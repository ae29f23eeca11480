"""Device choice for torch models: ``auto`` picks CUDA when torch sees a GPU."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """Map ``auto|cpu|cuda`` to a torch device string; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from pipeline.errors import PipelineError

        raise PipelineError(
            "base.device is 'cuda' but torch sees no CUDA device (use 'auto' or 'cpu')"
        )
    return device


def memory_format_of(model: torch.nn.Module) -> torch.memory_format:
    """The memory format of ``model``'s 4-D weights: ``channels_last`` or ``contiguous_format``.

    Inputs should be passed in the same format. Mixing the two in training crashes torch
    2.13's oneDNN AVX-512 backward kernels (SIGSEGV or heap corruption in ``backward()``).

    Raises
    ------
    ValueError
        The model mixes both formats (tests assert no trainable model does).
    """
    formats = set()
    for p in model.parameters():
        if p.dim() == 4 and p.shape[2:] != (1, 1) and p.shape[1] > 1:  # layout-distinguishing only
            last = p.is_contiguous(memory_format=torch.channels_last)
            formats.add(
                torch.channels_last if last and not p.is_contiguous() else torch.contiguous_format
            )
    if len(formats) > 1:
        raise ValueError(f"{type(model).__name__} mixes channels_last and contiguous 4-D weights")
    return formats.pop() if formats else torch.contiguous_format


def tensorflow_device() -> str:
    """``cuda`` when TensorFlow (MTCNN, Spleeter) sees a GPU, else ``cpu``."""
    import tensorflow as tf

    return "cuda" if tf.config.list_physical_devices("GPU") else "cpu"
