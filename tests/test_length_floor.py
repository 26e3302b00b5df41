"""The length_floor reward: PPO cannot buy score by cutting its answers short, and honest answers lose nothing."""

import pytest

from rlhfpipe.config import RewardTerm
from rlhfpipe.errors import PipelineError
from rlhfpipe.rewards.registry import RewardRegistry, length_floor


class StatsOnly:
    """The one thing the registry reads of a reward model for this reward: SFT's mean words per response."""

    def __init__(self, words):
        self.words = words

    def sft_words(self):
        return self.words

    def score(self, prompts, responses, batch_size, normalize):
        raise AssertionError("length_floor must not run the reward model")


PROMPTS = [[{"role": "user", "content": "My brother stopped speaking to me."}]] * 5


def test_honest_answers_keep_everything_and_short_ones_pay_in_proportion():
    honest = "I am sorry to hear that, it must be hard to lose touch with someone so close."  # 17 words
    padded = " ".join(["well"] * 40)
    scores = length_floor(PROMPTS, [honest, padded, "I am sorry.", "Sorry.", ""], floor_words=10.0)
    # at or above 10 words: 0; 3 words: -(1 - 3/10); 1 word: -0.9; nothing: -1
    assert scores.tolist() == pytest.approx([0.0, 0.0, -0.7, -0.9, -1.0])


def test_the_floor_is_a_fraction_of_the_sft_length_from_the_reward_model_statistics():
    registry = RewardRegistry(StatsOnly(words=15.0), length_floor_fraction=0.8)  # floor 12 words
    total, parts = registry.combine([RewardTerm("brevity", 1.0), RewardTerm("length_floor", 2.0)], PROMPTS[:2],
                                    ["six words is a short answer", " ".join(["w"] * 12)])
    assert parts["length_floor"].tolist() == pytest.approx([-(1 - 6 / 12), 0.0])
    assert total.tolist() == pytest.approx([(1 - 6 / 40) - 2 * 0.5, 1 - 12 / 40])


def test_a_collapse_scores_below_an_honest_policy_even_when_the_reward_model_pays_for_it():
    """A policy that halves its answers against one that keeps them: the floor's weight in the default
    (2.0 at 0.8 of SFT's length) outweighs the reward model gain PPO reached by shrinking (+0.56 SFT std)."""
    registry = RewardRegistry(StatsOnly(words=14.6), length_floor_fraction=0.8)
    collapsed = registry.score("length_floor", PROMPTS[:1], [" ".join(["w"] * 7)])
    assert float(2.0 * collapsed) < -0.56


def test_an_sft_policy_that_says_nothing_sets_no_floor():
    """A barely trained SFT can answer every normalisation prompt with nothing: no length to keep, no penalty."""
    registry = RewardRegistry(StatsOnly(words=0.0), length_floor_fraction=0.8)
    assert registry.score("length_floor", PROMPTS[:3], ["", "one", "a longer answer"]).tolist() == [0.0, 0.0, 0.0]


def test_without_a_fraction_the_reward_is_not_available():
    with pytest.raises(PipelineError, match="length_floor"):
        RewardRegistry(StatsOnly(words=15.0)).score("length_floor", PROMPTS[:1], ["hi"])
