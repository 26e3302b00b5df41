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
    # by hand from vader_lexicon.txt, compound = sum / sqrt(sum**2 + 15): terrible -2.1 + hate -2.7 = -4.8;
    # love 3.2 + great 3.1 + one "!" (0.292) = 6.592; no lexicon word: 0
    texts = [NEGATIVE, "I love that, great!", NEUTRAL, ""]
    expected = [-4.8 / (4.8 ** 2 + 15) ** 0.5, 6.592 / (6.592 ** 2 + 15) ** 0.5, 0.0, 0.0]
    assert empathy_scores(texts) == pytest.approx(expected, abs=1e-4)
    assert -1.0 <= empathy_scores([POSITIVE * 20])[0] <= 1.0


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
