"""Every third-party package the code imports is pinned, in the file that installs it.

The import graph is the one source of truth (STYLE.md): the code under ``pipeline/``,
``stages/`` and ``configs/`` runs in the environment of ``requirements.txt``, so each package
it imports must be pinned there with ``==``, even one that another package already pulls in
(scipy, pydantic-core, ...), or a new release of that package could change the results
unnoticed. A package that only ``tests/`` imports (benchmarks included) belongs in
``requirements-test.txt``, which ``make test`` and ``make bench`` install on top. Imports are
read with :mod:`ast` (nothing is imported), including imports inside functions and
``pytest.importorskip("name")``; an import name is mapped to its distribution through the
installed packages' file lists (``cv2`` -> opencv-python-headless, ``dlib`` -> dlib-bin).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIRS = ("pipeline", "stages", "configs")
TEST_DIRS = ("tests",)
FIRST_PARTY = {"pipeline", "stages", "configs", "tests", "conftest"}
# Calls that import a module named by a string constant.
IMPORT_CALLS = {"importorskip", "import_module", "find_spec"}

# Pinned although nothing imports them, and why. Anything else in a requirements file that
# no code imports is a stray (a test tool in the run-time file, a dropped dependency).
NOT_IMPORTED = {
    "requirements.txt": {
        "dvc": "the command that runs the pipeline",
        "setuptools": "face_recognition_models imports pkg_resources, removed in setuptools 81",
        "tf-keras": "spleeter's Keras 2 at run time, pinned in step with tensorflow",
        # where base.executor: dask is in requirements.txt (code imports only `distributed`)
        "dask": "the core of distributed, pinned in step with it",
    },
    "requirements-test.txt": {
        "ruff": "the linter `make test` runs",
    },
}


def canonical(name: str) -> str:
    """PEP 503 name: ``tf_keras`` and ``TF.Keras`` -> ``tf-keras``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> dict[str, str | None]:
    """``{canonical name: exact version or None}`` of a requirements file (None: not ``==``)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([^\s,;]+)|.*)", line)
        assert m, f"{path.name}: cannot read {line!r}"
        out[canonical(m[1])] = m[2]
    return out


def imported_modules(file: Path) -> set[str]:
    """Top-level names of the modules ``file`` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if called in IMPORT_CALLS and isinstance(arg, ast.Constant):
                if isinstance(arg.value, str) and not arg.value.startswith("."):
                    names.add(arg.value)
    return {n.split(".")[0] for n in names}


def third_party_imports(root: Path, dirs: tuple[str, ...]) -> dict[str, list[str]]:
    """``{module: [files that import it]}`` over ``dirs``, without the stdlib and first party."""
    found: dict[str, list[str]] = defaultdict(list)
    for d in dirs:
        for file in sorted((root / d).rglob("*.py")):
            for mod in imported_modules(file):
                if mod not in sys.stdlib_module_names and mod not in FIRST_PARTY:
                    found[mod].append(file.relative_to(root).as_posix())
    return dict(found)


def module_owners() -> dict[str, set[str]]:
    """``{top-level module: canonical names of the installed distributions that ship it}``,
    from each distribution's file list (top_level.txt misses e.g. dlib-bin's ``dlib``)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        # RECORD read as text: Distribution.files builds a path object per file (~1 min here)
        record = dist.read_text("RECORD") or ""
        tops = {line.split(",", 1)[0].split("/", 1)[0] for line in record.splitlines()}
        for top in tops:
            if top in ("", "..", "__pycache__") or top.endswith((".dist-info", ".egg-info")):
                continue
            owners[top.split(".")[0]].add(canonical(dist.metadata["Name"]))
    return owners


def _owner(module: str, owners: dict[str, set[str]], pins: dict[str, str | None]) -> str:
    ships = owners.get(module, set())
    assert ships, f"{module!r} is imported but no installed distribution ships it"
    pinned = sorted(ships & set(pins))
    return pinned[0] if pinned else sorted(ships)[0]


def check(root: Path) -> list[str]:
    """Every problem with ``root``'s requirement files, as one line each (empty: all good)."""
    run_file, test_file = "requirements.txt", "requirements-test.txt"
    run_pins = requirements(root / run_file)
    test_pins = requirements(root / test_file)
    owners = module_owners()
    runtime = third_party_imports(root, RUNTIME_DIRS)
    tests = third_party_imports(root, TEST_DIRS)
    problems = []
    run_used, test_used = set(), set()
    for mod, files in sorted(runtime.items()):
        dist = _owner(mod, owners, run_pins)
        run_used.add(dist)
        if run_pins.get(dist) is None:
            problems.append(f"{run_file}: no '{dist}==' pin; {files[0]} imports {mod}")
    for mod, files in sorted(tests.items()):
        if mod in runtime:
            continue
        dist = _owner(mod, owners, {**run_pins, **test_pins})
        test_used.add(dist)
        if test_pins.get(dist) is None and not (
            run_pins.get(dist) and dist in NOT_IMPORTED[run_file]
        ):
            problems.append(
                f"{test_file}: no '{dist}==' pin; only tests import {mod} ({files[0]})"
            )
    for file, pins, used in ((run_file, run_pins, run_used), (test_file, test_pins, test_used)):
        for dist in sorted(set(pins) - used - set(NOT_IMPORTED[file])):
            if dist in test_used:
                where = f"only tests import it (pin it in {test_file})"
            elif dist in run_used:
                where = f"run-time code imports it (pin it in {run_file} only)"
            else:
                where = "no code imports it"
            problems.append(f"{file}: '{dist}' is pinned but {where}")
    return problems


def test_every_imported_package_is_pinned_in_the_right_file():
    problems = check(ROOT)
    assert not problems, "\n".join(problems)


def test_pins_are_what_is_installed():
    """The environment the tests run in is the pinned one (a local tag such as torch's
    ``+cpu`` aside)."""
    wrong = []
    for file in NOT_IMPORTED:
        for dist, version in sorted(requirements(ROOT / file).items()):
            if version is None:
                continue
            installed = importlib.metadata.version(dist).split("+")[0]
            if installed != version:
                wrong.append(f"{file}: {dist}=={version}, installed {installed}")
    assert not wrong, "\n".join(wrong)


def test_the_scan_finds_imports_in_functions_and_importorskip(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "a.py").write_text(
        "import os\nimport numpy.linalg\nfrom pipeline.x import y\nfrom . import z\n"
        "def f():\n    from scipy import signal\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text(
        "import pytest\nkeras = pytest.importorskip('tf_keras')\n"
    )
    assert third_party_imports(tmp_path, RUNTIME_DIRS) == {
        "numpy": ["pipeline/a.py"],
        "scipy": ["pipeline/a.py"],
    }
    assert set(third_party_imports(tmp_path, TEST_DIRS)) == {"pytest", "tf_keras"}
    assert {"tf-keras"} <= module_owners()["tf_keras"]
    assert "dlib-bin" in module_owners()["dlib"]  # not in dlib-bin's top_level.txt


def test_a_missing_or_misplaced_pin_is_reported(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "a.py").write_text("import numpy\nimport scipy\n")
    (tmp_path / "stages").mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("import pytest\nimport numpy\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.0.2\npytest==9.2.0\ndvc==3.67.1\n")
    (tmp_path / "requirements-test.txt").write_text("ruff==0.17.6\n")
    assert check(tmp_path) == [
        "requirements.txt: no 'scipy==' pin; pipeline/a.py imports scipy",
        "requirements-test.txt: no 'pytest==' pin; only tests import pytest (tests/t.py)",
        "requirements.txt: 'pytest' is pinned but only tests import it (pin it in "
        "requirements-test.txt)",
    ]
