"""GRPO's bridge to the reward registry: one TRL reward function per term, named after it."""

import pytest
import torch

from rlhfpipe.config import RewardTerm
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.training.grpo import registry_reward_functions


def test_each_term_becomes_a_named_function_scoring_the_completion_text():
    registry = RewardRegistry()
    terms = [RewardTerm("brevity", 2.0), RewardTerm("empathy", 0.5)]
    functions = registry_reward_functions(registry, terms)
    assert [f.__name__ for f in functions] == ["brevity", "empathy"]
    prompts = [[{"role": "user", "content": "I feel alone."}]] * 2
    completions = [[{"role": "assistant", "content": "word " * 10}], [{"role": "assistant", "content": "I love that, great!"}]]
    brevity = functions[0](prompts=prompts, completions=completions, completion_ids=None, trainer_state=None)
    assert brevity == pytest.approx([0.75, 1.0 - 4 / 40])
    empathy = functions[1](prompts=prompts, completions=completions)
    # by hand from vader_lexicon.txt: love 3.2 + great 3.1 + one "!" (0.292) = 6.592, over sqrt(6.592**2 + 15)
    assert empathy == pytest.approx([0.0, 6.592 / (6.592 ** 2 + 15) ** 0.5], abs=1e-4)
    # plain-text completions (a prompt given as a string) are scored as they are
    assert functions[0](prompts=["hi"], completions=["one two"]) == pytest.approx([1.0 - 2 / 40])
    assert isinstance(registry.score("brevity", prompts, ["a"]), torch.Tensor)


def test_brevity_gives_nothing_for_an_empty_response():
    scores = RewardRegistry().score("brevity", [[]] * 4, ["", "   ", "one", "w " * 50])
    assert scores.tolist() == pytest.approx([0.0, 0.0, 1.0 - 1 / 40, 0.0])
