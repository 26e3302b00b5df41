"""The "empathy" reward: VADER compound sentiment of a reply, in [-1, 1].

VADER (Hutto & Gilbert, 2014) is a lexicon-and-rules sentiment scorer; its compound score is a
normalised sum of word valences. Warm, supportive wording scores high and hostile wording low, so
it is a cheap proxy for an empathetic tone. It is gameable: stock phrases ("glad", "great",
"love") raise it regardless of whether the reply engages with the seeker.

nltk's downloader cannot reach its host here, so the lexicon comes from the ``vaderSentiment``
package, which ships VADER's ``vader_lexicon.txt``; nltk's analyser finds it once that package's
directory is on ``nltk.data.path``.
"""

from __future__ import annotations

import functools
import os

import nltk
import vaderSentiment
from nltk.sentiment.vader import SentimentIntensityAnalyzer

EMPATHY_THRESHOLD = 0.05
"""Compound score at or above which VADER's authors call a text positive."""


@functools.lru_cache(maxsize=1)
def _analyser() -> SentimentIntensityAnalyzer:
    lexicon_dir = os.path.dirname(vaderSentiment.__file__)
    if lexicon_dir not in nltk.data.path:
        nltk.data.path.append(lexicon_dir)
    return SentimentIntensityAnalyzer(lexicon_file="vader_lexicon.txt")


def vader_compound(texts: list[str]) -> list[float]:
    """VADER compound score of each text, in [-1, 1]; one float per text (len(texts),)."""
    analyser = _analyser()
    return [analyser.polarity_scores(text)["compound"] for text in texts]


def empathy_scores(texts: list[str]) -> list[float]:
    """The registry's "empathy" reward: the compound score of each text, (len(texts),)."""
    return vader_compound(texts)


def is_empathetic(compound: float) -> bool:
    return compound >= EMPATHY_THRESHOLD
