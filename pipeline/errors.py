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
