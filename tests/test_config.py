"""Params validation: every bad value fails once, with one line naming the key, the value and the rule."""

from pathlib import Path

import pytest
import yaml

from conftest import merge, quick_params

from rlhfpipe.config import ParamError, load_section
from rlhfpipe.errors import PipelineError


REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, section: str, values: dict):
    """params.yaml with ``values`` merged over ``section``."""
    params = quick_params()
    merge(params[section], values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("section, values, key", [
    ("preferences", {"rouge_threshold": 1.5}, "preferences.rouge_threshold"),
    ("preferences", {"rouge_threshold": -0.1}, "preferences.rouge_threshold"),
    ("preferences", {"num_samples": 0}, "preferences.num_samples"),
    ("preferences", {"strategy": "votes"}, "preferences.strategy"),
    ("ppo", {"cliprange": 1.0}, "ppo.cliprange"),
    ("ppo", {"batch_size": 64, "mini_batches": 3}, "ppo.mini_batches"),
    ("ppo", {"batch_size": 64, "mini_batches": 2, "grad_accum": 5}, "ppo.grad_accum"),
    ("ppo", {"kl_estimator": "k2"}, "ppo.kl_estimator"),
    ("ppo", {"rewards": [{"name": "happiness", "weight": 1.0}]}, "ppo.rewards[0].name"),
    ("ppo", {"rewards": [{"name": "empathy", "weight": -1.0}]}, "ppo.rewards[0].weight"),
    ("ppo", {"rewards": []}, "ppo.rewards"),
    ("ppo", {"lora": {"r": 0}}, "ppo.lora.r"),
    ("ppo", {"total_episodes": 8, "batch_size": 64}, "ppo.total_episodes"),
    ("ppo", {"learning_rate": "fast"}, "ppo.learning_rate"),
    ("ppo", {"klcoef": 0.1}, "ppo.klcoef"),
    ("sft", {"batch_size": 0}, "sft.batch_size"),
    ("sft", {"adaptive_kl": True}, "sft.adaptive_kl"),
    ("model", {"hidden_size": 30, "num_heads": 4}, "model.num_heads"),
    ("data", {"min_words": 50, "max_words": 20}, "data.max_words"),
    ("evaluate", {"ranked_completions": 2}, "evaluate.ranked_completions"),
    ("reward", {"margin": -1.0}, "reward.margin"),
    ("grpo", {"num_generations": 1}, "grpo.num_generations"),
    ("grpo", {"loss_type": "ppo"}, "grpo.loss_type"),
    ("grpo", {"scale_rewards": "std"}, "grpo.scale_rewards"),
    ("grpo", {"beta": -0.1}, "grpo.beta"),
    ("grpo", {"rewards": [{"name": "reward_model", "weight": 0.0}]}, "grpo.rewards"),
])
def test_bad_params_name_the_key(tmp_path, section, values, key):
    with pytest.raises(ParamError) as err:
        load_section(section, write(tmp_path, section, values))
    message = str(err.value)
    assert err.value.key == key
    assert message.startswith(f"params.yaml: {key}=")
    assert "\n" not in message


def test_ints_are_accepted_for_floats(tmp_path):
    cfg = load_section("ppo", write(tmp_path, "ppo", {"kl_coef": 1, "batch_size": 32, "mini_batches": 4}))
    assert cfg.kl_coef == 1.0 and isinstance(cfg.kl_coef, float)
    assert cfg.mini_batch_size == 8 and cfg.micro_batch_size == 8


@pytest.mark.parametrize("section, dotted", [("ppo", ["kl_coef"]), ("dialogue", ["ppo", "temperature"]),
                                             ("ppo", ["rewards", 0, "weight"]), ("cohesion", ["givenness"])])
def test_a_missing_key_fails_in_one_line_naming_it(tmp_path, section, dotted):
    params = quick_params()
    node = params[section]
    for key in dotted[:-1]:
        node = node[key]
    del node[dotted[-1]]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError) as err:
        load_section(section, path)
    name = section + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in dotted)
    assert str(err.value) == f"params.yaml: {name}: missing key (params.yaml is the only source of values)"


def test_a_missing_key_stops_a_stage_with_one_line(tmp_path):
    import subprocess
    import sys

    params = quick_params()
    del params["corpus"]["seed"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, str(REPO / "stages/corpus.py"), "corpus.jsonl"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "error: params.yaml: corpus.seed: missing key (params.yaml is the only source of values)\n"
    assert not (tmp_path / "corpus.jsonl").exists()


def test_config_dataclasses_have_no_defaults_but_the_documented_optional_one():
    import dataclasses

    from rlhfpipe.config import SECTIONS, field_docs

    seen, todo, defaults = set(), list(SECTIONS.values()), []
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = __import__("typing").get_type_hints(cls)
        for f in dataclasses.fields(cls):
            inner = [t for t in (hints[f.name], *__import__("typing").get_args(hints[f.name])) if dataclasses.is_dataclass(t)]
            todo += inner
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                defaults.append(f"{cls.__name__}.{f.name}")
                assert "optional" in field_docs(cls)[f.name]
    assert defaults == ["PPOConfig.total_episodes"]


def test_default_params_file_is_valid():
    from rlhfpipe.config import SECTIONS

    for name in SECTIONS:
        load_section(name, "params.yaml")


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("ppo:\n  kl_coef: [0.1\n")
    with pytest.raises(PipelineError, match=r"params.yaml:\d+: not valid YAML"):
        load_section("ppo", path)
