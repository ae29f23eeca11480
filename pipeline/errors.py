"""Exceptions that stages turn into a clear one-line error and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """A problem the user can fix (bad input, bad params, missing weights)."""


class DataError(PipelineError):
    """A problem with one input file; the message always names the file.

    Parameters
    ----------
    path : path-like
        The offending file.
    problem : str
        What is wrong with it, in plain words.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class ParamsError(PipelineError):
    """A missing, misspelled or invalid key in params.yaml."""


class NothingToFit(PipelineError):
    """The train split holds no sample a model can learn from, because the data lacks the
    model's modality (no faces in an audio-only corpus, no audio in an image corpus).

    Model stages catch it and write a skip record (:func:`pipeline.scores.write_skipped`)
    instead of a model, so a plain ``dvc repro`` runs on any dataset; fusion and evaluation
    leave such models out and say why.
    """
