"""Impossible values in the MOODPO section, GRPO's micro-batching and PPO's reward shaping keys: refused
by name, through params.yaml."""

import copy

import pytest

from conftest import REPO, quick_params, write_params
from rlhfpipe.config import ParamError, load_section

DEFAULTS = quick_params()


def objectives(*names):
    return [{"name": n, "hv_reference": 0.0} for n in names]


@pytest.mark.parametrize("section, values, key, rule", [
    ("moodpo", {"objectives": objectives("empathy")}, "moodpo.objectives", "needs at least two objectives"),
    ("moodpo", {"objectives": objectives("empathy", "charm")}, "moodpo.objectives[1].name", "unknown reward"),
    ("moodpo", {"objectives": objectives("empathy", "empathy")}, "moodpo.objectives", "names an objective twice"),
    ("moodpo", {"alpha": 0.0}, "moodpo.alpha", "must be > 0"),
    ("moodpo", {"prompts": "prompts.txt"}, "moodpo.prompts", "must be a prepared .jsonl or a .csv file"),
    ("moodpo", {"prompt_column": ""}, "moodpo.prompt_column", "must name a column"),
    ("moodpo", {"max_new_tokens": 0}, "moodpo.max_new_tokens", "must be >= 1"),
    ("moodpo", {"temperature": 0.0}, "moodpo.temperature", "must be > 0"),
    ("moodpo", {"max_new_tokens": 40, "max_length": 40}, "moodpo.max_length", "must be > moodpo.max_new_tokens"),
    ("moodpo", {"missing_eos_penalty": -1.0}, "moodpo.missing_eos_penalty", "must be >= 0"),
    ("moodpo", {"weights_per_prompt": 1}, "moodpo.weights_per_prompt", "must be >= 2"),
    ("moodpo", {"iteration_1": {"steps": 0}}, "moodpo.iteration_1.steps", "must be >= 1"),
    ("moodpo", {"iteration_2": {"learning_rate": 1.5}}, "moodpo.iteration_2.learning_rate", "must be in (0, 1)"),
    ("moodpo", {"iteration_1": {"beta": 0.0}}, "moodpo.iteration_1.beta", "must be > 0"),
    ("moodpo", {"weights_per_prompt": 4, "iteration_2": {"batch_size": 6}}, "moodpo.iteration_2.batch_size", ""),
    ("moodpo", {"grad_accum": 0}, "moodpo.grad_accum", "must be >= 1"),
    # a prompt's copies share a step: 12 copies are not whole prompts of 8
    ("moodpo", {"weights_per_prompt": 8, "iteration_1": {"batch_size": 12}},
     "moodpo.iteration_1.batch_size", "must be a multiple of moodpo.weights_per_prompt = 8"),
    ("grpo", {"prompts_per_step": 3, "num_generations": 2, "grad_accum": 4}, "grpo.grad_accum",
     "must be >= 1 and divide prompts_per_step * num_generations = 6"),
    ("ppo", {"reward_clip": -1.0}, "ppo.reward_clip", "must be >= 0 (0 = off)"),
    ("ppo", {"missing_eos_penalty": -0.5}, "ppo.missing_eos_penalty", "must be >= 0"),
    ("ppo", {"target_kl": 0.0}, "ppo.target_kl", "must be > 0"),
    ("ppo", {"length_floor": 1.5}, "ppo.length_floor", "must be in [0, 1]"),
    ("ppo", {"length_floor": 0.0, "rewards": [{"name": "empathy", "weight": 1.0}, {"name": "length_floor", "weight": 1.0}]},
     "ppo.length_floor", "must be > 0 when ppo.rewards names length_floor"),
    ("grpo", {"rewards": [{"name": "length_floor", "weight": 1.0}]}, "grpo.rewards[0].name", "unknown reward here"),
    ("moodpo", {"objectives": objectives("empathy", "length_floor")}, "moodpo.objectives[1].name", "unknown reward"),
    ("ppo", {"vf_coef": -0.1}, "ppo.vf_coef", "must be >= 0"),
    ("ppo", {"reward_clip": float("nan")}, "ppo.reward_clip", "must be a finite number"),
    ("runtime", {"precision": "fp16"}, "runtime.precision", "must be auto, fp32 or bf16"),
])
def test_bad_value_is_refused_by_its_key(tmp_path, section, values, key, rule):
    params = copy.deepcopy(DEFAULTS)
    for name, value in values.items():
        if isinstance(value, dict):
            params[section][name].update(value)
        else:
            params[section][name] = value
    write_params(tmp_path, params)
    with pytest.raises(ParamError) as err:
        load_section(section, tmp_path / "params.yaml")
    assert err.value.key == key and rule in err.value.rule
    assert str(err.value).startswith(f"params.yaml: {key}=")


def test_the_defaults_pass():
    for section in ("moodpo", "ppo", "grpo"):
        load_section(section, REPO / "params.yaml")
