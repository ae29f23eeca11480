"""Which ``pipeline`` source files a module depends on, followed through its imports.

One walk serves two checks that must agree: the per-video cache digest of a stage covers the
source of every pipeline module its worker runs (:func:`pipeline.io.per_video.code_digest`),
and ``tests/test_dvc_yaml.py`` checks that each of those files is among the stage's DVC deps.
The walk reads source with :mod:`ast` (nothing is imported) and follows ``import pipeline.x``
and ``from pipeline.x import y`` at any depth, including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds pipeline/


def module_file(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of module ``name`` (``pipeline.io.h5`` -> pipeline/io/h5.py), or None."""
    path = root / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def direct_imports(file: Path, root: Path = PACKAGE_ROOT) -> set[Path]:
    """Pipeline source files that ``file`` imports directly (``from a.b import c`` gives a/b/c.py
    when c is a module, else a/b.py)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
            if not all(module_file(n, root) for n in names):
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name == "pipeline" or name.startswith("pipeline."):
                path = module_file(name, root)
                if path is not None:
                    found.add(path)
    return found


def pipeline_files(
    files: list[Path], root: Path = PACKAGE_ROOT, leaves: frozenset[Path] = frozenset()
) -> list[Path]:
    """``files`` plus every pipeline source file they import, transitively; sorted.

    The imports of a file in ``leaves`` are not followed (the file itself is listed).
    """
    seen: set[Path] = set()
    todo = [Path(f).resolve() for f in files]
    leaves = frozenset(Path(f).resolve() for f in leaves)
    while todo:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        if file not in leaves:
            todo.extend(direct_imports(file, root) - seen)
    return sorted(seen)
