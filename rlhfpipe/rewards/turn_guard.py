"""A guard on the dialogue reward: a child turn earns its window's cohesion only when it is as long and as varied
as the child's turns were before PPO.

Why. The cohesion indices are ratios over the window: a two-word child turn ("I feel.") leaves the
window to the context and the teacher's reply, whose overlap and diversity do not depend on the child,
and a looped turn ("I feel. I feel. I feel.") repeats content words that the overlap and givenness
indices count as picking up what was said. Dialogue PPO found the first: it raised cohesion by
shrinking the child's turns to a few words.

What it rewards. The window's cohesion times two factors in [0, 1]:

- length: ``min(1, words / floor)`` with ``floor = dialogue.turn_length_floor x`` the child's mean words
  per turn on the held-out windows before PPO. A turn at or above the floor keeps its full reward; a
  turn of half the floor keeps half. The floor is relative to the child's own length, so the guard
  asks the child to keep its length, not to reach one that a corpus or a tokenizer would set.
- repetition: ``min(1, distinct_2 / dialogue.turn_distinct_2_floor)``, distinct-2 being the share of
  distinct word bigrams among the turn's bigrams (cohesion's tokenizer: lower-cased, punctuation
  dropped, so "I feel. I feel." repeats the bigram "i feel"). A turn of fewer than two words has no
  bigram and factor 1: the length factor is what scores it.

Both factors multiply, so neither shortness nor looping can be bought back by the other, and both
are exactly 1 for a turn of ordinary length without repeats: the guard changes no honest turn's reward.

How it could still be gamed. Padding to the floor with varied filler ("well, you know, I mean")
passes both factors; so does one stock turn of the right length repeated across every window, since
each turn is scored alone (the monitors' pooled distinct-2 of the child's turns shows that one). Words
longer than needed are not penalised at all, nor is the teacher's share of the window.
"""

from __future__ import annotations

import torch

from rlhfpipe.rewards.cohesion import tokenize


def distinct_2(text: str) -> float:
    """Distinct / all bigrams of cohesion's tokens of ``text``; 1.0 when it has fewer than two tokens."""
    tokens = tokenize(text)
    bigrams = list(zip(tokens, tokens[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else 1.0


class TurnGuard:
    """Multiplier of each child turn's cohesion: length factor times repetition factor, each in [0, 1]."""

    def __init__(self, floor_words: float, distinct_2_floor: float):
        if floor_words < 0 or not 0 <= distinct_2_floor <= 1:
            raise ValueError(f"TurnGuard: floor_words must be >= 0 and distinct_2_floor in [0, 1], "
                             f"got {floor_words} and {distinct_2_floor}")
        self.floor_words, self.distinct_2_floor = floor_words, distinct_2_floor

    def length_factor(self, turn: str) -> float:
        # whitespace words, as the stage's child_words metric counts them
        return min(1.0, len(turn.split()) / self.floor_words) if self.floor_words > 0 else 1.0

    def repetition_factor(self, turn: str) -> float:
        return min(1.0, distinct_2(turn) / self.distinct_2_floor) if self.distinct_2_floor > 0 else 1.0

    def __call__(self, turns: list[str]) -> torch.Tensor:
        """(B,) factor of each turn."""
        return torch.tensor([self.length_factor(t) * self.repetition_factor(t) for t in turns])


def turn_metrics(before_rows: list[dict], after_rows: list[dict], guard: TurnGuard) -> dict:
    """The child's mean words per turn before and after PPO and their ratio (the target keeps it >= 0.8), and the
    mean guard factor of its turns: what shrinking or looping would have cost."""
    words = [sum(len(r["child"].split()) for r in rows) / len(rows) for rows in (before_rows, after_rows)]
    factors = [float(guard([r["child"] for r in rows]).mean()) for rows in (before_rows, after_rows)]
    return {"child_words_before": round(words[0], 6), "child_words_after": round(words[1], 6),
            "child_words_ratio": round(words[1] / words[0], 6) if words[0] else None,
            "turn_floor_words": round(guard.floor_words, 6),
            "turn_guard_before": round(factors[0], 6), "turn_guard_after": round(factors[1], 6)}
