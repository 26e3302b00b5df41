"""Cohesion indices against hand-computed values, plus reward bounds and weight validation."""

from __future__ import annotations

import pytest

from conftest import params_config
from rlhfpipe.config import ParamError
from rlhfpipe.rewards.cohesion import (
    INDEX_KEYS,
    CohesionWeights,
    cohesion_indices,
    cohesion_reward,
    cohesion_rewards,
    mattr,
    split_sentences,
    tokenize,
)
from rlhfpipe.rewards.wordlists import CONNECTIVES, FUNCTION_WORDS, PRONOUNS


def only(**weights: float) -> CohesionWeights:
    """Weights with every component off except those named."""
    zero = {name: 0.0 for name in CohesionWeights.__dataclass_fields__}
    return CohesionWeights(**{**zero, **weights})


# --- text handling --------------------------------------------------------------------------------
def test_tokenize_lowercases_keeps_contractions_drops_punctuation():
    assert tokenize("I don’t KNOW, well-being!") == ["i", "don't", "know", "well", "being"]


def test_split_sentences_rules():
    text = "I saw Dr. Smith. Was it bad?! \"Yes.\" ...\nNew line"
    assert split_sentences(text) == ["I saw Dr. Smith.", "Was it bad?!", '"Yes."', "New line"]


def test_word_lists_are_lowercase_and_pronouns_are_function_words():
    phrases = [p for ps in CONNECTIVES.values() for p in ps]
    assert all(w == w.lower() for w in [*FUNCTION_WORDS, *phrases])
    assert PRONOUNS <= FUNCTION_WORDS


# --- lexical diversity ----------------------------------------------------------------------------
def test_ttr():
    # the cat saw the dog: types {the, cat, saw, dog} = 4, tokens 5
    assert cohesion_indices(["The cat saw the dog."])["ttr"] == pytest.approx(4 / 5)


def test_mattr_window_three():
    # windows: [no no no] 1/3, [no no yes] 2/3, [no yes no] 2/3 -> (1/3 + 2/3 + 2/3) / 3 = 5/9
    assert mattr(["no", "no", "no", "yes", "no"], window=3) == pytest.approx(5 / 9)


def test_mattr_falls_back_to_ttr_below_window():
    # 5 tokens < window 50 -> plain TTR 4/5
    assert cohesion_indices(["the cat saw the dog"])["mattr"] == pytest.approx(4 / 5)
    assert cohesion_indices(["no no no yes no"], window=3)["mattr"] == pytest.approx(5 / 9)


def test_content_and_function_ttr():
    ix = cohesion_indices(["The cat saw the cat."])
    # content: cat saw cat -> 2 types / 3 tokens; function: the the -> 1 / 2
    assert ix["content_ttr"] == pytest.approx(2 / 3)
    assert ix["function_ttr"] == pytest.approx(1 / 2)


# --- adjacent overlap -----------------------------------------------------------------------------
def test_adjacent_overlap_two_sentences():
    ix = cohesion_indices(["I lost my job. The job paid my rent."])
    # s1 content {lost, job}; s2 {job, paid, rent}; shared {job} -> 1/2; the one pair shares -> 1
    assert ix["adjacent_overlap_sentence"] == pytest.approx(1 / 2)
    assert ix["adjacent_overlap_sentence_binary"] == 1.0


def test_adjacent_overlap_turns_with_plural_folding():
    turns = ["My friends left.", "Your friend left too?", "It rained."]
    ix = cohesion_indices(turns)
    # t1 {friend, left}; t2 {friend, left}; t3 {rained}
    # pair 1: 2/2 = 1; pair 2: 0/2 = 0 -> mean 1/2; binary: 1 of 2 pairs share -> 1/2
    assert ix["adjacent_overlap_turn"] == pytest.approx(1 / 2)
    assert ix["adjacent_overlap_turn_binary"] == pytest.approx(1 / 2)


def test_sentence_pairs_cross_turn_boundaries_and_empty_turns_are_skipped():
    ix = cohesion_indices(["Work stresses me.", "", "Work is hard. Sleep helps."])
    # sentences: {work, stress} -> {work, hard} -> {sleep, help}; shares 1/2, 0 -> mean 1/4
    # turns (empty one skipped): {work, stress} -> {work, hard, sleep, help}: 1/2
    assert ix["adjacent_overlap_sentence"] == pytest.approx(1 / 4)
    assert ix["adjacent_overlap_sentence_binary"] == pytest.approx(1 / 2)
    assert ix["adjacent_overlap_turn"] == pytest.approx(1 / 2)


def test_related_turns_overlap_more_than_unrelated():
    related = ["I failed my exam and feel stupid.", "Failing one exam does not make you stupid."]
    unrelated = ["I failed my exam and feel stupid.", "The weather looks sunny today."]
    key = "adjacent_overlap_turn"
    assert cohesion_indices(related)[key] > cohesion_indices(unrelated)[key]
    overlap_only = only(adjacent_overlap_turn=1.0)
    assert cohesion_reward(related, overlap_only) > cohesion_reward(unrelated, overlap_only)


# --- connectives ----------------------------------------------------------------------------------
def test_connectives_because_however():
    ix = cohesion_indices(["I left because I was tired, however I feel better."])
    # 10 tokens; because: basic + causal; however: adversative; all = 2 occurrences
    assert ix["connectives_basic"] == pytest.approx(1 / 10)
    assert ix["connectives_causal"] == pytest.approx(1 / 10)
    assert ix["connectives_adversative"] == pytest.approx(1 / 10)
    assert ix["connectives_additive"] == 0.0
    assert ix["connectives_temporal"] == 0.0
    assert ix["connectives_all"] == pytest.approx(2 / 10)


def test_multiword_connectives_match_as_phrases():
    ix = cohesion_indices(["As a result I stayed home. On the other hand I rested."])
    # 12 tokens; "as a result" causal, "on the other hand" adversative -> 2 occurrences
    assert ix["connectives_causal"] == pytest.approx(1 / 12)
    assert ix["connectives_adversative"] == pytest.approx(1 / 12)
    assert ix["connectives_all"] == pytest.approx(2 / 12)


def test_longest_phrase_wins_and_phrases_stay_inside_sentences():
    ix = cohesion_indices(["So far I cope as well as I can. I said so. That helped."])
    # 14 tokens; "so far" temporal (not basic "so"); "as well as" additive once (not "as well");
    # "so. That" is not "so that": "so" basic only -> basic 1, additive 1, temporal 1, causal 0, all 3
    assert ix["connectives_basic"] == pytest.approx(1 / 14)
    assert ix["connectives_additive"] == pytest.approx(1 / 14)
    assert ix["connectives_temporal"] == pytest.approx(1 / 14)
    assert ix["connectives_causal"] == 0.0
    assert ix["connectives_all"] == pytest.approx(3 / 14)


# --- givenness and pronouns -----------------------------------------------------------------------
def test_givenness_and_pronoun_density():
    ix = cohesion_indices(["My dog died.", "My dogs were old."])
    # tokens: my dog died my dogs were old = 7; content stems dog died dog old -> 1 given of 4
    # pronouns: my, my -> 2 / 7
    assert ix["givenness"] == pytest.approx(1 / 4)
    assert ix["pronoun_density"] == pytest.approx(2 / 7)


# --- degenerate input -----------------------------------------------------------------------------
@pytest.mark.parametrize("turns", [[], [""], ["   ", "...", "!!"]])
def test_empty_input_gives_zeros(turns):
    assert cohesion_indices(turns) == dict.fromkeys(INDEX_KEYS, 0.0)
    assert cohesion_reward(turns, params_config("cohesion")) == 0.0


def test_single_function_word_turn_is_defined():
    ix = cohesion_indices(["Okay."])
    assert ix["content_ttr"] == 0.0 and ix["givenness"] == 0.0 and ix["function_ttr"] == 1.0


# --- reward ---------------------------------------------------------------------------------------
DIALOGUES = [
    ["I lost my job last week and I feel awful.", "Losing a job is hard. What worries you most?"],
    ["and and because however so then also but"] * 3,
    ["job job job", "job job job", "job job job"],
    ["Hi."],
]


def test_reward_bounded_and_deterministic():
    weights = params_config("cohesion")
    first = cohesion_rewards(DIALOGUES, weights)
    assert first == cohesion_rewards(DIALOGUES, weights)
    assert all(0.0 <= r <= 1.0 for r in first)
    assert first == [cohesion_reward(d, weights) for d in DIALOGUES]


def test_reward_is_weighted_mean_of_unit_components():
    turns = ["I left because I was tired, however I feel better."]
    # connectives: 2/10 per word saturates the 0.08 cap -> 1.0; mattr = ttr = 8/10 (i x3)
    assert cohesion_reward(turns, only(connectives_all=1.0)) == 1.0
    assert cohesion_reward(turns, only(mattr=1.0)) == pytest.approx(8 / 10)
    # weighted mean of mattr 8/10 (weight 1) and the saturated connective rate 1.0 (weight 3)
    assert cohesion_reward(turns, only(mattr=1.0, connectives_all=3.0)) == pytest.approx((1 * 0.8 + 3 * 1.0) / 4)


def test_connective_rate_below_cap_is_linear():
    turns = ["and " + "word " * 24]
    # 1 connective / 25 tokens = 0.04 -> 0.04 / 0.08 = 0.5
    assert cohesion_reward(turns, only(connectives_all=1.0)) == pytest.approx(0.5)


# --- weight validation ----------------------------------------------------------------------------
def test_default_weights_validate():
    params_config("cohesion").validate()


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_bad_weight_names_its_key(value):
    with pytest.raises(ParamError) as err:
        params_config("cohesion", givenness=value).validate()
    assert err.value.key == "givenness"


def test_all_zero_weights_rejected():
    with pytest.raises(ParamError) as err:
        cohesion_reward(["hello"], only())
    assert err.value.key == "weights"
