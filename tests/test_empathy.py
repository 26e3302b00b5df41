"""VADER-based empathy reward: lexicon loads offline, hand-labelled sentences, threshold."""

from __future__ import annotations

import os

import nltk
import pytest
import vaderSentiment

from rlhfpipe.rewards.empathy import EMPATHY_THRESHOLD, empathy_scores, is_empathetic, vader_compound

POSITIVE = "I am so glad you reached out, you are doing great."
NEGATIVE = "This is terrible and I hate it."
NEUTRAL = "The meeting is on Tuesday at noon."


def test_hand_labelled_sentences_have_the_expected_sign():
    pos, neg, neu = vader_compound([POSITIVE, NEGATIVE, NEUTRAL])
    assert pos > 0.5
    assert neg < -0.5
    assert neu == 0.0


def test_empathy_reward_is_the_compound_score_in_range():
    texts = [POSITIVE, NEGATIVE, NEUTRAL, ""]
    scores = empathy_scores(texts)
    assert scores == vader_compound(texts)
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_threshold_is_inclusive():
    assert EMPATHY_THRESHOLD == 0.05
    assert is_empathetic(0.05)
    assert not is_empathetic(0.0499)
    assert not is_empathetic(-0.8)


def test_lexicon_dir_added_to_nltk_path_once():
    vader_compound([POSITIVE])
    vader_compound([NEGATIVE])
    assert nltk.data.path.count(os.path.dirname(vaderSentiment.__file__)) == 1


@pytest.mark.parametrize("text", [POSITIVE, NEGATIVE])
def test_scores_do_not_depend_on_batch(text):
    assert vader_compound([text]) == vader_compound([NEUTRAL, text])[1:]
