"""dvc.yaml declares, for every stage, each package module its script imports, directly or through others.

A module missing from a stage's deps would let DVC skip a rerun that changes its outs.
"""

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def imported_code(path: Path) -> set[str]:
    """Files of every rlhfpipe module ``path`` imports, directly or through others, lazy imports included."""
    seen, todo = set(), [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rlhfpipe":
                # `from rlhfpipe.a import b` may name a function of a.py or the module a/b.py
                candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names if alias.name.split(".")[0] == "rlhfpipe"]
            else:
                continue
            for module in candidates:
                for file in (REPO / (module.replace(".", "/") + ".py"), REPO / module.replace(".", "/") / "__init__.py"):
                    rel = file.relative_to(REPO).as_posix()
                    if file.is_file() and rel not in seen:
                        seen.add(rel)
                        todo.append(file)
    return seen


def stage_script(spec: dict) -> str:
    return next(word for word in spec["cmd"].split() if word.startswith("stages/"))


def uncovered(spec: dict) -> list[str]:
    script = stage_script(spec)
    deps = spec["deps"]
    # a package's __init__.py holds only its docstring (test below), so no stage depends on it
    imported = [script] + sorted(f for f in imported_code(REPO / script) if not f.endswith("/__init__.py"))
    return [f for f in imported if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]


def test_package_inits_hold_only_a_docstring():
    for init in (REPO / "rlhfpipe").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value.value, str), init


def test_imports_are_followed_through_modules_and_lazy_imports():
    code = imported_code(REPO / "stages/compare.py")
    assert {"rlhfpipe/evaluation/metrics.py", "rlhfpipe/rewards/empathy.py", "rlhfpipe/errors.py"} <= code
    assert "rlhfpipe/evaluation/policy.py" not in code
    # moodpo/weights.py imports evaluation/metrics.py inside a function
    assert "rlhfpipe/evaluation/metrics.py" in imported_code(REPO / "rlhfpipe/moodpo/weights.py")


def test_a_missing_dep_is_found():
    spec = {"cmd": "python stages/ppo.py a b", "deps": ["stages/ppo.py", "rlhfpipe"]}
    assert uncovered(spec) == []
    spec["deps"] = ["stages/ppo.py", "rlhfpipe/training"]
    missing = uncovered(spec)
    assert "rlhfpipe/evaluation/plots.py" in missing and "rlhfpipe/training/common.py" not in missing


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_every_module_it_imports(name):
    spec = STAGES[name].get("do", STAGES[name])
    assert uncovered(spec) == [], f"{name}: imported but not in dvc.yaml deps"
