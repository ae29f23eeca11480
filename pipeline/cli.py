"""One entry-point helper so every stage gets the same CLI, logging and error handling.

A stage script decorates ``main(src: Path, dst: Path, ...)``; every parameter becomes a
required ``--option`` (underscores become dashes), parameters with defaults are optional.
A :class:`~pipeline.errors.PipelineError` ends the stage with a one-line message naming the
problem and exit status 1; any other exception keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import os
import typing
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError

log = logging.getLogger("pipeline")


def setup_logging() -> None:
    """Configure stdlib logging once (level from ``AVEMO_LOG_LEVEL``, default INFO)."""
    level = os.environ.get("AVEMO_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )
    # TensorFlow and absl are noisy at import; keep them to warnings and errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def stage_cli(fn: Callable[..., None]) -> Callable[[list[str] | None], None]:
    """Turn ``fn(**paths)`` into a CLI entry point ``main(argv=None)``.

    Parameters annotated ``str`` stay strings (names); all others become ``Path``.
    """
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def main(argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(
            prog=fn.__module__, description=(fn.__doc__ or "").strip()
        )
        hints = typing.get_type_hints(fn)
        for name, p in sig.parameters.items():
            flag = "--" + name.replace("_", "-")
            kind = str if hints.get(name) is str else Path
            if p.default is inspect.Parameter.empty:
                parser.add_argument(flag, dest=name, type=kind, required=True)
            else:
                parser.add_argument(flag, dest=name, type=kind, default=p.default)
        args = parser.parse_args(argv)
        setup_logging()
        try:
            fn(**vars(args))
        except PipelineError as err:
            log.error("%s failed: %s", fn.__module__, err)
            raise SystemExit(1) from None

    return main
