"""TAACO-style cohesion indices and a bounded cohesion reward for dialogues.

Indices follow the definitions in Crossley, Kyle & McNamara (2016), "The tool for the automatic
analysis of text cohesion (TAACO)", re-implemented here with our own tokeniser and word lists
(``rlhfpipe.rewards.wordlists``). A dialogue is a list of turns; a turn is a paragraph.

Text handling. ``tokenize`` lower-cases and keeps runs of letters/digits, with inner apostrophes
kept ("don't" is one token, hyphens split). ``split_sentences`` splits after ``.``, ``!`` or ``?``
followed by whitespace (not after a few abbreviations such as "Dr.") and at newlines. A content
word is any token outside ``FUNCTION_WORDS``. Lexical diversity uses lower-cased word forms;
overlap and givenness match content words after a light stemmer that only strips possessive "'s"
and plural/3rd-person "-s" ("friends" = "friend", "feels" = "feel"; no other lemmatisation).

Each index, what it rewards, and how it can be gamed:

- ``ttr``: distinct tokens / tokens. Rewards varied wording; falls with length, so it is not
  comparable across lengths. Gamed by short replies or by rare-word salad.
- ``mattr``: mean TTR over every ``window``-token window (default 50; plain TTR when the text is
  shorter). Length-robust diversity. Rewards novel words, so it pulls against overlap and
  givenness; gamed by synonym cycling and off-topic vocabulary.
- ``content_ttr`` / ``function_ttr``: TTR over content / function tokens only. Same caveats.
- ``adjacent_overlap_sentence`` / ``adjacent_overlap_turn``: for each adjacent pair of sentences
  (across turn boundaries) / non-empty turns, the share of the first segment's content-word types
  that reappear in the second, averaged over pairs. Rewards picking up what was just said (a reply
  that echoes the seeker's words). Gamed by parroting: repeating content words inflates it.
- ``*_binary``: share of adjacent pairs sharing at least one content word. Coarser; gamed by a
  single repeated word.
- ``connectives_<basic|causal|additive|adversative|temporal|all>``: connective occurrences per
  token. Phrases match longest-first within a sentence ("as a result" is one causal connective;
  "so far" is temporal, not basic "so"); ``all`` counts each occurrence once. Rewards explicit
  logical links; gamed by stuffing connectives, and noisy because "so", "when", "and" have
  non-connective uses.
- ``givenness``: share of content tokens whose word already occurred earlier in the dialogue.
  Rewards staying on topic; gamed by repetition, and it pulls against MATTR.
- ``pronoun_density``: pronouns per token. Rewards reference back to known entities, but also
  vague "it/this" text; gamed by replacing nouns with pronouns. Reported, not in the reward.

Degenerate input: any index whose denominator is zero (no tokens, no content words, fewer than two
segments) is 0.0, so an empty dialogue has all indices 0.0 and reward 0.0.

``cohesion_reward`` maps each weighted component to [0, 1] (ratios as they are; connective
incidence as ``min(rate / CONNECTIVE_CAP, 1)``) and returns their weighted mean.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import fields

from rlhfpipe.config import CohesionWeights
from rlhfpipe.rewards.wordlists import CONNECTIVES, FUNCTION_WORDS, PRONOUNS

MATTR_WINDOW = 50
CONNECTIVE_CAP = 0.08
"""Connective rate that saturates the reward: 8 per 100 words, about the density of fluent
explanatory prose; beyond it more connectives read as stuffing, not cohesion."""

INDEX_KEYS = (
    "ttr", "mattr", "content_ttr", "function_ttr",
    "adjacent_overlap_sentence", "adjacent_overlap_sentence_binary",
    "adjacent_overlap_turn", "adjacent_overlap_turn_binary",
    *(f"connectives_{c}" for c in CONNECTIVES), "connectives_all",
    "givenness", "pronoun_density",
)

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s|$)|\n+")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e"})
_ABBREVIATION_TAIL = re.compile(r"[\w.]+$")


def _phrase_table() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Connective phrase (as tokens) -> every category that lists it."""
    table: dict[tuple[str, ...], tuple[str, ...]] = {}
    for category, entries in CONNECTIVES.items():
        for phrase in (tuple(entry.split()) for entry in entries):
            table[phrase] = table.get(phrase, ()) + (category,)
    return table


_PHRASES = _phrase_table()
_LONGEST_PHRASE = max(len(p) for p in _PHRASES)


# --------------------------------------------------------------------------------------------------
# Text handling
# --------------------------------------------------------------------------------------------------
def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens: letter/digit runs, inner apostrophes kept, punctuation dropped."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def split_sentences(text: str) -> list[str]:
    """Split after .!? (plus closing quotes/brackets) before whitespace, and at newlines.

    A period after a listed abbreviation ("Dr.") does not end a sentence. Pieces without any word
    token ("...", emoji) are dropped, so every token of ``text`` lands in exactly one sentence.
    """
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        tail = _ABBREVIATION_TAIL.search(text, start, match.start())
        if match.group().startswith(".") and tail and tail.group().lower() in _ABBREVIATIONS:
            continue
        sentences.append(text[start:match.end()].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if tokenize(s)]


def _stem(word: str) -> str:
    """Fold possessive 's and plural/3rd-person -s so "friends" matches "friend"."""
    if word.endswith("'s"):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and len(word) > 3 and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _content_stems(tokens: list[str]) -> list[str]:
    return [_stem(t) for t in tokens if t not in FUNCTION_WORDS]


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


# --------------------------------------------------------------------------------------------------
# Indices
# --------------------------------------------------------------------------------------------------
def ttr(tokens: list[str]) -> float:
    return _ratio(len(set(tokens)), len(tokens))


def mattr(tokens: list[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average TTR; plain TTR when there are fewer tokens than ``window``."""
    if window < 1:
        raise ValueError(f"mattr window must be >= 1, got {window}")
    if len(tokens) < window:
        return ttr(tokens)
    counts = Counter(tokens[:window])
    total = len(counts)
    for old, new in zip(tokens, tokens[window:]):
        counts[old] -= 1
        if not counts[old]:
            del counts[old]
        counts[new] += 1
        total += len(counts)
    return total / (window * (len(tokens) - window + 1))


def adjacent_overlap(segments: list[list[str]]) -> tuple[float, float]:
    """(mean share of segment n's content types found in n+1, share of pairs sharing any)."""
    types = [set(_content_stems(s)) for s in segments]
    pairs = list(zip(types, types[1:]))
    shares = [_ratio(len(a & b), len(a)) for a, b in pairs]
    return _ratio(sum(shares), len(pairs)), _ratio(sum(1 for a, b in pairs if a & b), len(pairs))


def connective_counts(sentences: list[list[str]]) -> dict[str, int]:
    """Count connectives per category, matching the longest phrase first within each sentence."""
    counts = dict.fromkeys([*CONNECTIVES, "all"], 0)
    for tokens in sentences:
        i = 0
        while i < len(tokens):
            size = _match_length(tokens, i)
            if size:
                for category in _PHRASES[tuple(tokens[i:i + size])]:
                    counts[category] += 1
                counts["all"] += 1
            i += size or 1
    return counts


def _match_length(tokens: list[str], i: int) -> int:
    for size in range(min(_LONGEST_PHRASE, len(tokens) - i), 0, -1):
        if tuple(tokens[i:i + size]) in _PHRASES:
            return size
    return 0


def givenness(tokens: list[str]) -> float:
    """Share of content tokens whose (stemmed) word already occurred earlier."""
    seen: set[str] = set()
    given = 0
    stems = _content_stems(tokens)
    for stem in stems:
        given += stem in seen
        seen.add(stem)
    return _ratio(given, len(stems))


def cohesion_indices(turns: list[str], window: int = MATTR_WINDOW) -> dict[str, float]:
    """All indices for one dialogue, keyed by ``INDEX_KEYS``; 0.0 wherever undefined."""
    turn_sentences = [[tokenize(s) for s in split_sentences(t)] for t in turns]
    sentences = [s for turn in turn_sentences for s in turn]
    turn_tokens = [[w for s in turn for w in s] for turn in turn_sentences]
    tokens = [w for s in sentences for w in s]
    content = [t for t in tokens if t not in FUNCTION_WORDS]
    function = [t for t in tokens if t in FUNCTION_WORDS]
    sent_overlap, sent_binary = adjacent_overlap(sentences)
    turn_overlap, turn_binary = adjacent_overlap([t for t in turn_tokens if t])
    connectives = connective_counts(sentences)
    return {
        "ttr": ttr(tokens),
        "mattr": mattr(tokens, window),
        "content_ttr": ttr(content),
        "function_ttr": ttr(function),
        "adjacent_overlap_sentence": sent_overlap,
        "adjacent_overlap_sentence_binary": sent_binary,
        "adjacent_overlap_turn": turn_overlap,
        "adjacent_overlap_turn_binary": turn_binary,
        **{f"connectives_{c}": _ratio(n, len(tokens)) for c, n in connectives.items()},
        "givenness": givenness(tokens),
        "pronoun_density": _ratio(sum(t in PRONOUNS for t in tokens), len(tokens)),
    }


# --------------------------------------------------------------------------------------------------
# Reward (CohesionWeights lives in rlhfpipe.config with the other params dataclasses: dialogue.cohesion)
# --------------------------------------------------------------------------------------------------
def _unit(key: str, value: float) -> float:
    """Map an index to [0, 1]: ratios already are; per-word connective rates saturate at the cap."""
    if key.startswith("connectives_"):
        return min(value / CONNECTIVE_CAP, 1.0)
    return value


def _weighted_mean(turns: list[str], weights: CohesionWeights) -> float:
    indices = cohesion_indices(turns)
    pairs = [(getattr(weights, f.name), _unit(f.name, indices[f.name])) for f in fields(weights)]
    return sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)


def cohesion_reward(turns: list[str], weights: CohesionWeights) -> float:
    """Weighted mean of the unit-mapped indices, in [0, 1]; deterministic."""
    weights.validate()
    return _weighted_mean(turns, weights)


def cohesion_rewards(dialogue_windows: list[list[str]], weights: CohesionWeights) -> list[float]:
    """``cohesion_reward`` for each dialogue window, validating the weights once."""
    weights.validate()
    return [_weighted_mean(turns, weights) for turns in dialogue_windows]
