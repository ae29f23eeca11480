"""Benchmark: a first install of two requirement files, one after the other, from clean venvs.

Usage::

    python -m tests.benchmarks.bench_install --old git:REV --new requirements.txt
        [--rounds 2] [--out reports/benchmarks/install.json] [--python python3.11] [--work DIR]

``--old`` and ``--new`` are requirement files, or ``git:REV`` for ``requirements.txt`` at git
revision REV (``git show REV:requirements.txt``). For each, in turn: ``python3.11 -m venv``,
then ``pip install -r`` with an empty pip cache (every file downloaded, every sdist built,
as on a user's first ``make``), then ``pip check``. It records the wall time of the two
steps, the venv's size (``du``), the packages installed, which packages pip had to build from
source, and every call of the C compiler: ``CC``/``CXX`` point at a wrapper that logs its
arguments and runs gcc/g++, which is what setuptools calls when it builds an extension such as
``webrtcvad``.

Figures depend on the network and on the other work on the machine: compare the two rows of
one run. Needs PyPI access and about 10 GB of free disk in ``--work``; the venvs are removed
afterwards unless ``--keep``. This is a script, so its table goes to stdout with ``print``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = """#!/bin/sh
echo "$(date +%s.%N) $(basename "$0") $*" >> {log}
exec {real} "$@"
"""


def read_requirements(spec: str) -> str:
    """Text of ``spec``: a file path, or ``git:REV`` for requirements.txt at that revision."""
    if spec.startswith("git:"):
        rev = spec[len("git:") :]
        cmd = ["git", "-C", str(ROOT), "show", f"{rev}:requirements.txt"]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return Path(spec).read_text()


def pins(text: str) -> list[str]:
    """The requirement lines of a requirements file, comments and blank lines dropped."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _compiler_wrappers(folder: Path, log: Path) -> dict[str, str]:
    """``CC``/``CXX`` wrappers in ``folder`` that log each call to ``log``."""
    env = {}
    for var, name in (("CC", "gcc"), ("CXX", "g++")):
        real = shutil.which(name)
        wrapper = folder / f"logged-{name}"
        wrapper.write_text(WRAPPER.format(log=log, real=real or name))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        env[var] = str(wrapper)
    return env


def _du(path: Path) -> tuple[int, str]:
    """(size in KiB, ``du -sh`` text) of ``path``."""
    kib = int(
        subprocess.run(["du", "-sk", path], capture_output=True, text=True).stdout.split()[0]
    )
    human = subprocess.run(["du", "-sh", path], capture_output=True, text=True).stdout.split()[0]
    return kib, human


def measure(label: str, text: str, python: str, work: Path, keep: bool) -> dict:
    """Install ``text`` (a requirements file's content) into a new venv under ``work/label``."""
    folder = work / label
    folder.mkdir(parents=True)
    req = folder / "requirements.txt"
    req.write_text(text)
    venv, cache, log = folder / "venv", folder / "pip-cache", folder / "compiler.log"
    log.touch()
    env = dict(os.environ, PIP_CACHE_DIR=str(cache), PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(_compiler_wrappers(folder, log))

    t = time.perf_counter()
    subprocess.run([python, "-m", "venv", venv], check=True, env=env)
    venv_s = time.perf_counter() - t
    py = str(venv / "bin" / "python")
    t = time.perf_counter()
    proc = subprocess.run(
        [py, "-m", "pip", "install", "--no-input", "-r", req],
        env=env,
        capture_output=True,
        text=True,
    )
    install_s = time.perf_counter() - t
    (folder / "pip-install.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise SystemExit(f"{label}: pip install failed: {' | '.join(tail)}")
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True, env=env)
    freeze = subprocess.run(
        [py, "-m", "pip", "freeze"], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    kib, human = _du(venv)
    calls = [line.split(" ", 1) for line in log.read_text().splitlines()]
    built = sorted(set(re.findall(r"Building wheel for (\S+)", proc.stdout)))
    res = {
        "venv_s": round(venv_s, 1),
        "install_s": round(install_s, 1),
        "venv_kib": kib,
        "venv_du_sh": human,
        "packages_installed": len(freeze),
        "freeze": freeze,
        "built_from_source": built,
        "downloaded_files": len(re.findall(r"^\s*Downloading \S+ \(", proc.stdout, re.M)),
        "local_files": len(re.findall(r"^Processing /", proc.stdout, re.M)),
        "c_compiler_calls": len(calls),
        "c_compiler_invoked": bool(calls),
        "c_compiler_first_call": calls[0][1][:200] if calls else None,
        "c_compiler_span_s": (
            round(float(calls[-1][0]) - float(calls[0][0]), 1) if calls else 0.0
        ),
        "pip_check": (check.stdout + check.stderr).strip(),
        "pip_check_clean": check.returncode == 0,
    }
    if not keep:
        shutil.rmtree(folder)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="requirements file, or git:REV")
    p.add_argument("--new", required=True, help="requirements file, or git:REV")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/install.json"))
    p.add_argument("--python", default=shutil.which("python3.11") or "python3")
    p.add_argument("--rounds", type=int, default=1, help="round 2 runs new first, and so on")
    p.add_argument("--work", type=Path, default=None, help="folder for the venvs (a new tmp)")
    p.add_argument("--keep", action="store_true", help="keep the venvs and pip logs")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_install_", dir=args.work))
    version = subprocess.run(
        [args.python, "--version"], capture_output=True, text=True
    ).stdout.strip()
    texts = {label: read_requirements(getattr(args, label)) for label in ("old", "new")}
    res = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": version,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "method": (
            "one after the other, alternating which goes first each round: `python -m venv`, "
            "then `pip install -r` with an empty pip cache (PIP_CACHE_DIR), then `pip check`; "
            "CC/CXX wrapped to log compiler calls"
        ),
        **{
            label: {"source": getattr(args, label), "requirements": pins(texts[label])}
            for label in ("old", "new")
        },
        "runs": [],
    }
    for r in range(args.rounds):
        for label in ("old", "new") if r % 2 == 0 else ("new", "old"):
            run = measure(f"{label}{r + 1}", texts[label], args.python, work, args.keep)
            res["runs"].append({"round": r + 1, "requirements": label} | run)
            print(
                f"round {r + 1} {label:4s}: install {run['install_s']:6.1f} s, "
                f"venv {run['venv_du_sh']}, {run['packages_installed']} packages, "
                f"compiler calls {run['c_compiler_calls']}, "
                f"built from source: {', '.join(run['built_from_source'])}"
            )
    for label in ("old", "new"):
        runs = [run for run in res["runs"] if run["requirements"] == label]
        last = runs[-1]
        res[label] |= {
            "install_s": [run["install_s"] for run in runs],
            "install_s_mean": round(sum(run["install_s"] for run in runs) / len(runs), 1),
            "venv_du_sh": last["venv_du_sh"],
            "venv_mib": round(last["venv_kib"] / 1024, 1),
            "packages_installed": last["packages_installed"],
            "built_from_source": last["built_from_source"],
            "c_compiler_invoked": any(run["c_compiler_invoked"] for run in runs),
            "c_compiler_span_s": [run["c_compiler_span_s"] for run in runs],
            "pip_check_clean": all(run["pip_check_clean"] for run in runs),
            "freeze": last["freeze"],
        }
    for run in res["runs"]:
        del run["freeze"]
    old, new = res["old"], res["new"]
    res["change"] = {
        "install_s_mean": round(new["install_s_mean"] - old["install_s_mean"], 1),
        "venv_mib": round(new["venv_mib"] - old["venv_mib"], 1),
        "packages_only_in_old": sorted(set(old["freeze"]) - set(new["freeze"])),
        "packages_only_in_new": sorted(set(new["freeze"]) - set(old["freeze"])),
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    for label in ("old", "new"):
        r = res[label]
        print(
            f"{label}: install {r['install_s']} s (mean {r['install_s_mean']}), venv "
            f"{r['venv_du_sh']} ({r['venv_mib']} MiB), {r['packages_installed']} packages, "
            f"C compiler {'yes' if r['c_compiler_invoked'] else 'no'}, pip check "
            f"{'clean' if r['pip_check_clean'] else 'BROKEN'}"
        )
    print("only in old:", ", ".join(res["change"]["packages_only_in_old"]))
    print("only in new:", ", ".join(res["change"]["packages_only_in_new"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
