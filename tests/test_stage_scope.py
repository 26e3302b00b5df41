"""What reruns when a param changes, read statically from dvc.yaml and the stage scripts, for every stage.

A stage reruns when a params key it declares changes, or when an output of a stage that reran is one of its
deps. The declarations must match the code: a section the script loads but does not declare would let DVC skip
a rerun that changes its outputs; a section declared but never loaded reruns the stage for nothing.
(Whether each declared module dep covers the code a stage imports is a separate, import-based test.)
"""

import ast
import json

import pytest
import yaml

from conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def expanded() -> dict[str, dict]:
    """Every stage as DVC names it (``evaluate@ppo``, ``moodpo@1``), with ${item}/${key}/${section.key} filled in."""
    stages = {}
    for name, spec in DVC.items():
        if "foreach" not in spec:
            stages[name] = spec
            continue
        items = spec["foreach"]
        pairs = items.items() if isinstance(items, dict) else ((item, item) for item in items)
        for key, item in pairs:
            text = json.dumps(spec["do"]).replace("${key}", str(key)).replace("${item}", str(item))
            stages[f"{name}@{key}"] = json.loads(text)
    for name, spec in stages.items():
        text = json.dumps(spec)
        for section, values in PARAMS.items():
            if isinstance(values, dict):
                for key, value in values.items():
                    text = text.replace("${%s.%s}" % (section, key), str(value))
        stages[name] = json.loads(text)
    return stages


STAGES = expanded()


def paths(entries) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def outs(spec) -> list[str]:
    return [p for kind in ("outs", "metrics", "plots") for p in paths(spec.get(kind))]


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/") or dep.startswith(path.rstrip("/") + "/")


def rerun(changed: str) -> set[str]:
    """Stages DVC reruns when params key ``changed`` (``ppo.kl_coef``) changes."""
    ran = {name for name, spec in STAGES.items()
           if any(changed == p or changed.startswith(p + ".") for p in paths(spec.get("params")))}
    grew = True
    while grew:
        produced = [o for name in ran for o in outs(STAGES[name])]
        more = {name for name, spec in STAGES.items() if name not in ran
                and any(covers(d, o) for d in paths(spec.get("deps")) for o in produced)}
        ran |= more
        grew = bool(more)
    return ran


@pytest.mark.parametrize("changed, expected", [
    ("corpus.n_dialogues", set(STAGES)),  # the default data source is the generated corpus
    ("ppo.kl_coef", {"ppo", "evaluate@ppo", "compare"}),
    ("grpo.beta", {"grpo", "evaluate@grpo", "compare"}),
    ("reward.margin", {"reward", "ppo", "grpo", "evaluate@sft", "evaluate@ppo", "evaluate@grpo", "compare",
                       "moodpo_warmup", "moodpo@1", "moodpo@2", "moodpo_eval"}),
    ("evaluate.num_prompts", {"evaluate@sft", "evaluate@ppo", "evaluate@grpo", "compare"}),
    ("dialogue.ppo.kl_coef", {"dialogue_ppo"}),  # child_sft declares dialogue.child_sft, not dialogue.ppo
    ("dialogue.child_sft.epochs", {"child_sft", "dialogue_ppo"}),
    ("moodpo.iteration_2.learning_rate", {"moodpo@2", "moodpo_eval"}),
    ("moodpo.alpha", {"moodpo_warmup", "moodpo@1", "moodpo@2", "moodpo_eval"}),
    ("moodpo.warmup.learning_rate", {"moodpo_warmup", "moodpo@1", "moodpo@2", "moodpo_eval"}),
    ("moodpo_eval.num_prompts", {"moodpo_eval"}),
    # base_model reads it, so everything that starts from models/base (child_sft takes its tokenizer) reruns
    ("model.allow_pickle", set(STAGES) - {"corpus", "prepare"}),
])
def test_a_param_change_reruns_exactly_these_stages(changed, expected):
    """By hand from the stage graph: what `dvc exp run -S` reran in the end-to-end tests, for every section."""
    assert rerun(changed) == expected


def loaded_sections(script: str) -> dict[str, set[str] | None]:
    """Section -> attribute paths the script reads on it (``child_sft.seed``); None when it passes the whole
    section object to other code (anything but ``fingerprint(as_dict(...))``, which only names a checkpoint)."""
    tree = ast.parse((REPO / script).read_text())
    variables = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets[0].elts if isinstance(node.targets[0], ast.Tuple) else node.targets
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for target, value in zip(targets, values):
                if (isinstance(value, ast.Call) and getattr(value.func, "id", "") == "load_section"
                        and isinstance(target, ast.Name)):
                    variables[target.id] = value.args[0].value
    reads: dict[str, set[str] | None] = {section: set() for section in variables.values()}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):  # load_section("x") handed straight to other code: the whole section is read
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "load_section"
                and not isinstance(parents[node], (ast.Assign, ast.Tuple))):
            reads[node.args[0].value] = None
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Name) and node.id in variables and isinstance(node.ctx, ast.Load)):
            continue
        section, parent, chain = variables[node.id], parents[node], []
        while isinstance(parent, ast.Attribute):
            chain.append(parent.attr)
            parent = parents[parent]
        if chain:
            if reads[section] is not None:
                reads[section].add(".".join(chain))
        elif not (isinstance(parent, ast.Call) and getattr(parent.func, "id", "") == "as_dict"
                  and getattr(getattr(parents[parent], "func", None), "id", "") == "fingerprint"):
            reads[section] = None
    return reads


# A section passed whole to library code, where dvc.yaml declares only some of its keys on purpose: what the
# library reads of it, so that the declaration can be checked against the code.
PASSED_WHOLE = {
    ("moodpo_warmup", "moodpo"): "best_of_n_rows and train_warmup read the fields their source names (checked below)",
    ("moodpo", "moodpo"): "train_moodpo reads objectives, alpha, weights_per_prompt, pairs, grad_accum, prompt_column, max_new_tokens, "
                          "temperature, max_length, missing_eos_penalty and the iteration's own section",
    ("base_model", "model"): "build_base_model reads every model field but dtype: models/base is always fp32",
    ("sft", "model"): "train_sft given base_dir reads only model.dtype: the model itself comes from models/base",
    ("compare", "monitors"): "policy_monitors reads the policy thresholds; moodpo_spread_min is moodpo_eval's",
    ("moodpo_eval", "monitors"): "moodpo_monitors reads only moodpo_spread_min",
}


@pytest.mark.parametrize("name", sorted(DVC))
def test_declared_params_are_what_the_stage_reads(name):
    spec = DVC[name].get("do") or DVC[name]
    script = next(w for w in spec["cmd"].split() if w.startswith("stages/"))
    declared = paths(spec.get("params"))
    reads = loaded_sections(script)
    if "${runtime.launcher}" in spec["cmd"]:
        reads["runtime"] = None  # the launcher (python, accelerate) runs the whole stage
    assert {p.split(".")[0] for p in declared} == set(reads), f"{name}: params sections declared != loaded"
    for section, attributes in reads.items():
        narrowed = [p.split(".", 1)[1] for p in declared if p.startswith(section + ".")]
        if section in declared:
            continue
        if attributes is None:
            assert (name, section) in PASSED_WHOLE, f"{name}: passes {section} whole but declares only {narrowed}"
            continue
        missing = [a for a in sorted(attributes) if not any(a == n or a.startswith(n + ".") for n in narrowed)]
        assert missing == [], f"{name}: reads {section}.{missing} without declaring them"


def test_moodpo_declares_every_moodpo_field_its_trainer_reads():
    # train_moodpo gets the moodpo section whole, so the generic check above cannot see a field left undeclared
    # (a change to it would not rerun the stage); moodpo.prompts reaches the stage through its command
    import dataclasses

    from rlhfpipe.config import MoodpoConfig

    fields = {f.name for f in dataclasses.fields(MoodpoConfig)} - {"prompts", "warmup", "iteration_1", "iteration_2"}
    declared = {p.split(".", 1)[1] for p in paths(DVC["moodpo"]["do"]["params"]) if p.startswith("moodpo.")}
    assert declared == fields | {"iteration_${key}"}


def test_moodpo_warmup_declares_the_moodpo_fields_its_code_reads():
    # the warm-up's code reads the section as ``cfg``: every ``cfg.<field>`` in it must be declared, and nothing more
    import inspect
    import re

    from rlhfpipe.moodpo.training import fitting_prompts

    sources = [(REPO / f).read_text() for f in ("stages/moodpo_warmup.py", "rlhfpipe/moodpo/warmup.py")]
    read = {m for text in sources + [inspect.getsource(fitting_prompts)] for m in re.findall(r"\bcfg\.(\w+)", text)}
    declared = {p.split(".", 1)[1] for p in paths(DVC["moodpo_warmup"]["params"]) if p.startswith("moodpo.")}
    assert read - {"prompts"} == declared
