"""The dialogue reward's guard: gamed child turns (short, looping "I feel.") score below honest turns of normal
length on hand-made windows, where the unguarded cohesion pays the gamed ones more."""

from __future__ import annotations

import pytest
import torch

from rlhfpipe.config import ParamError, RewardTerm
from rlhfpipe.dialogue.windows import DialogueReward
from rlhfpipe.rewards.cohesion import cohesion_reward
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.turn_guard import TurnGuard, distinct_2, turn_metrics
from conftest import params_config

CONTEXT = ["How was your day at school?"]
TEACHER_REPLY = "I hear you feel that way. What happened at school today?"
GAMED = ["I feel.", "I feel. I feel. I feel."]
HONEST = ["It was hard, my friends ignored me at lunch and I sat alone.",
          "School was long and my teacher gave us a lot of homework again."]
# the child wrote 12.5 words per turn before PPO; floor 0.8 x 12.5 = 10 words
GUARD = TurnGuard(floor_words=0.8 * 12.5, distinct_2_floor=0.9)


class FixedTeacher:
    """Answers every window with the same turn, so the child's turn is all that differs between windows."""

    def reply(self, windows):
        return [TEACHER_REPLY] * len(windows)


def test_distinct_2_by_hand():
    assert distinct_2("I feel. I feel. I feel.") == pytest.approx(2 / 5)  # (i feel) x3, (feel i) x2
    assert distinct_2("I feel.") == 1.0  # one bigram
    assert distinct_2("Hi") == 1.0 and distinct_2("") == 1.0  # no bigram: left to the length factor
    assert distinct_2(HONEST[0]) == 1.0


def test_guard_factors_by_hand():
    # "I feel.": 2 words / 10 -> 0.2, distinct-2 1 -> 1; the loop: 6 / 10 = 0.6 times (2/5) / 0.9 = 4/9
    assert GUARD(GAMED).tolist() == pytest.approx([0.2, 0.6 * 4 / 9])
    # 13 words each, every bigram distinct: the honest turns keep their whole reward
    assert GUARD(HONEST).tolist() == [1.0, 1.0]
    assert TurnGuard(0.0, 0.0)(GAMED).tolist() == [1.0, 1.0]  # both floors off
    with pytest.raises(ValueError, match="distinct_2_floor"):
        TurnGuard(10.0, 1.5)


def test_gamed_turns_score_below_honest_turns_only_with_the_guard():
    weights = params_config("cohesion")
    raw = {t: cohesion_reward(CONTEXT + [t, TEACHER_REPLY], weights) for t in GAMED + HONEST}
    # the hack the guard closes: unguarded, both gamed turns out-score both honest ones on these windows
    assert min(raw[t] for t in GAMED) > max(raw[t] for t in HONEST)

    terms = [RewardTerm("cohesion", 1.0)]
    registry = RewardRegistry(cohesion_weights=weights)
    prompts = [[{"role": "user", "content": CONTEXT[0]}]] * 4
    guarded, parts = DialogueReward(FixedTeacher(), registry, GUARD).combine(terms, prompts, GAMED + HONEST)
    factors = [0.2, 0.6 * 4 / 9, 1.0, 1.0]
    assert guarded.tolist() == pytest.approx([raw[t] * f for t, f in zip(GAMED + HONEST, factors)], abs=1e-6)
    assert max(guarded[:2]) < min(guarded[2:])
    unguarded, _ = DialogueReward(FixedTeacher(), registry).combine(terms, prompts, GAMED + HONEST)
    assert unguarded.tolist() == pytest.approx([raw[t] for t in GAMED + HONEST], abs=1e-6)
    assert torch.equal(parts["cohesion"], guarded)


def test_the_guard_scales_cohesion_only():
    terms = [RewardTerm("cohesion", 1.0), RewardTerm("brevity", 1.0)]
    prompts = [[{"role": "user", "content": CONTEXT[0]}]]
    _, parts = DialogueReward(FixedTeacher(), RewardRegistry(cohesion_weights=params_config("cohesion")), GUARD).combine(terms, prompts, ["I feel."])
    assert parts["brevity"].tolist() == pytest.approx([1 - 2 / 40])  # brevity still pays a short turn, unscaled


def test_turn_metrics_by_hand():
    before = [{"child": "one two three four"}, {"child": "one two three four five six"}]  # 5 words per turn
    after = [{"child": "one two"}, {"child": "a a a a"}]  # 3 words per turn
    guard = TurnGuard(0.8 * 5, 0.9)  # floor 4 words
    out = turn_metrics(before, after, guard)
    # after: "one two" 2/4 = 0.5; "a a a a": 4/4 = 1 times distinct-2 (1/3) / 0.9 = 0.37037 -> mean 0.435185
    assert out == {"child_words_before": 5.0, "child_words_after": 3.0, "child_words_ratio": 0.6,
                   "turn_floor_words": 4.0, "turn_guard_before": 1.0, "turn_guard_after": pytest.approx(0.435185)}


@pytest.mark.parametrize("field, value", [("turn_length_floor", 1.5), ("turn_distinct_2_floor", -0.1)])
def test_impossible_floors_name_the_key(field, value):
    with pytest.raises(ParamError) as err:
        params_config("dialogue", **{field: value}).validate()
    assert err.value.key == field
