"""Static checks that dvc.yaml, params.yaml and the stage scripts agree."""

import re
from pathlib import Path

import yaml

from pipeline.imports import pipeline_files
from pipeline.params import STAGES, declared_params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# Infrastructure every stage uses; listing it in every stage's deps would add noise only. The
# walk does not follow its imports: params.py imports other modules only to validate names.
INFRA = {"pipeline/cli.py", "pipeline/params.py", "pipeline/errors.py", "pipeline/io/atomic.py"}


def _body(stage):
    return DVC[stage].get("do", DVC[stage])


def _variants(name):
    """(params key in STAGES, declared params) for each variant of a stage.

    A matrix stage like `fit` loads `fit.<model>`; its `params:` use `${item.model}`.
    """
    body = _body(name)
    params = body.get("params", [])
    if "matrix" not in DVC[name]:
        return [(name, params)]
    yaml_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = []
    for axis, values in DVC[name]["matrix"].items():
        if isinstance(values, str):  # ${fit.models}
            node = yaml_params
            for part in values.strip("${}").split("."):
                node = node[part]
            values = node
        if any(f"${{item.{axis}}}" in p for p in params):
            out = [
                (f"{name}.{v}", [p.replace(f"${{item.{axis}}}", v) for p in params])
                for v in values
            ]
    return out


def test_every_stage_has_a_script_and_params_schema():
    for name in DVC:
        body = _body(name)
        script = f"stages/{name}.py"
        assert (ROOT / script).exists(), f"{name}: missing {script}"
        assert script in body["deps"], f"{name}: {script} is not a dep"
        assert f"python -m stages.{name} " in body["cmd"] + " ", (
            f"{name}: cmd does not run its script"
        )
        for key, _ in _variants(name):
            assert key in STAGES, f"{name}: no params schema {key!r} in pipeline.params.STAGES"


def test_declared_params_match_what_the_script_reads():
    for name in DVC:
        for key, params in _variants(name):
            assert params == declared_params(key), key
        text = (ROOT / "stages" / f"{name}.py").read_text()
        loads = re.findall(r'load_params\((f?)"([\w.{}]+)"', text)
        assert len(loads) == 1, f"{name}: the script must load its params exactly once"
        fstring, arg = loads[0]
        if "matrix" in DVC[name]:  # e.g. f"fit.{model}"
            assert fstring and arg.startswith(f"{name}."), name
        else:
            assert not fstring and arg == name, name


def _imported_files(script: Path) -> set[str]:
    """Repo-relative pipeline files a stage script runs: its imports, followed transitively."""
    files = pipeline_files([script], ROOT, frozenset(ROOT / f for f in INFRA))
    return {f.relative_to(ROOT).as_posix() for f in files if f != script.resolve()}


def test_pipeline_modules_a_stage_imports_are_deps():
    for name in DVC:
        deps = [d.rstrip("/") for d in _body(name)["deps"]]
        for file in sorted(_imported_files(ROOT / "stages" / f"{name}.py") - INFRA):
            if file.endswith("__init__.py"):
                continue
            covered = any(file == d or file.startswith(d + "/") for d in deps)
            assert covered, f"{name}: runs {file} but it is not among its deps"


def test_the_import_walk_follows_imports_transitively_and_inside_functions(tmp_path):
    pkg = tmp_path / "pipeline"
    (pkg / "sub").mkdir(parents=True)
    for init in (pkg / "__init__.py", pkg / "sub" / "__init__.py"):
        init.write_text("")
    (pkg / "a.py").write_text("from pipeline.sub import b, helper\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    import pipeline.c\n")
    (pkg / "sub" / "helper.py").write_text("")
    (pkg / "c.py").write_text("from pipeline.sub.b import f\nimport numpy\n")
    (pkg / "unused.py").write_text("")
    names = {p.relative_to(tmp_path).as_posix() for p in pipeline_files([pkg / "a.py"], tmp_path)}
    assert names == {
        "pipeline/a.py",
        "pipeline/sub/b.py",
        "pipeline/sub/helper.py",
        "pipeline/c.py",
    }


def test_every_out_is_ignored_by_git_not_committed():
    for name in DVC:
        for out in _body(name).get("outs", []):
            path = out if isinstance(out, str) else next(iter(out))
            assert "${" in path or not (ROOT / path).is_symlink()
            top = path.split("/")[0]
            assert top in {"data", "features", "models", "reports"}, (
                f"{name}: out {path} outside the layout"
            )
