"""evaluate_reward on hand-made pairs and a scorer with known scores: every number by hand."""

import pytest
import torch

from rlhfpipe.training.reward_model import evaluate_reward
from conftest import params_config


class KnownScores:
    """A reward model whose score of a response is looked up in a table."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    def score(self, prompts, responses, **kwargs):
        return torch.tensor([self.table[r] for r in responses])


def pair(chosen: str, rejected: str, source: str) -> dict:
    return {"prompt": [{"role": "user", "content": "Hi."}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "source": source}


ROWS = [
    pair("a b c", "d", "upvotes"),        # chosen 2.0 > 1.0: win; longer chosen: length win
    pair("e", "f g", "upvotes"),          # 0.5 == 0.5: tie (0.5); shorter chosen: length loss
    pair("h i", "j k", "generated"),      # 3.0 > -1.0: win; same length: 0.5
    pair("l", "m", "generated"),          # 0.0 > -2.0: win; same length: 0.5
    pair("n o p q", "r", "generated"),    # -1.0 < 1.0: loss; longer chosen: length win
]
SCORES = {"a b c": 2.0, "d": 1.0, "e": 0.5, "f g": 0.5, "h i": 3.0, "j k": -1.0, "l": 0.0, "m": -2.0,
          "n o p q": -1.0, "r": 1.0}


def test_accuracy_per_source_margin_and_length_baseline_by_hand():
    metrics, _ = evaluate_reward(KnownScores(SCORES), ROWS, params_config("reward", bootstrap_samples=200))
    assert metrics["accuracy"] == pytest.approx((1 + 0.5 + 1 + 1 + 0) / 5)
    assert metrics["accuracy_by_source"] == {"generated": pytest.approx(round(2 / 3, 4)), "upvotes": 0.75}
    assert metrics["mean_margin"] == pytest.approx((1.0 + 0.0 + 4.0 + 2.0 - 2.0) / 5)
    assert metrics["length_baseline_accuracy"] == pytest.approx((1 + 0 + 0.5 + 0.5 + 1) / 5)
    assert metrics["test_pairs"] == 5
    low, high = metrics["accuracy_ci95"]
    assert low < 0.7 < high  # five mixed outcomes: a real spread around the mean


@pytest.mark.parametrize("scores, expected", [
    ({**SCORES, "n o p q": 5.0, "f g": 0.0}, [1.0, 1.0]),  # every pair right: every resample's mean is 1
    ({k: 0.0 for k in SCORES}, [0.5, 0.5]),                  # every pair tied: 0.5 whatever is resampled
])
def test_interval_collapses_when_every_outcome_is_the_same(scores, expected):
    metrics, _ = evaluate_reward(KnownScores(scores), ROWS, params_config("reward", bootstrap_samples=50))
    assert metrics["accuracy_ci95"] == expected and metrics["accuracy"] == expected[0]
