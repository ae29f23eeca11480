"""Byte-reproducible serialisation of models that hold torch modules.

Plain pickling of a torch tensor keys its storage by the memory address; ``torch.save`` to a
file names the archive's root folder after the file; and a whole pickled ``nn.LSTM`` differs
in structure with the history of its flat-weight list. Each gives different bytes for the
same weights, which breaks "same inputs, same bytes" (and DVC's caching downstream). What is
stable: ``torch.save`` of a *state dict* written through memory (storages keyed 0, 1, ...,
root folder ``archive``). Modules are therefore stored as class + constructor arguments
(``init_kwargs``, recorded by the module) + state dict.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch


def module_bytes(module: torch.nn.Module) -> tuple[type, dict, bytes]:
    """(class, constructor kwargs, state-dict bytes) of a module that records ``init_kwargs``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return type(module), module.init_kwargs, buf.getvalue()


def module_from_bytes(blob: tuple[type, dict, bytes]) -> torch.nn.Module:
    """Inverse of :func:`module_bytes` (on CPU, in eval mode)."""
    cls, kwargs, state = blob
    # arrays may come back read-only (joblib memory-maps them); torch would wrap, not copy, them
    module = cls(**{k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()})
    module.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True))
    return module.eval()


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` with reproducible bytes (no file name inside the archive)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    Path(path).write_bytes(buf.getvalue())


class TorchPickleMixin:
    """Pickle ``nn.Module`` attributes of an estimator as :func:`module_bytes`.

    The modules must record their constructor arguments as ``init_kwargs``.
    """

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__)
        for k, v in list(state.items()):
            if isinstance(v, torch.nn.Module):
                state[k] = ("__torch_module__", module_bytes(v))
        return state

    def __setstate__(self, state: dict) -> None:
        state = {
            k: module_from_bytes(v[1])
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "__torch_module__"
            else v
            for k, v in state.items()
        }
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:
            self.__dict__.update(state)
