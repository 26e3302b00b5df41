"""Rewards of the summary task: ``summary`` (coverage of the reference) and ``faithful`` (support in the dialogue).

Both compare content words: lower-cased word tokens minus function words (rlhfpipe.rewards.wordlists) and the
words a summary uses to frame itself ("client", "therapist"), reduced by a crude suffix stemmer so that "exams"
meets "exam" and "worked" meets "work". Both are in [0, 1], deterministic, and give an answer without content
words 0, so saying nothing never pays.

summary
    Content-word unigram F1 against the reference (clipped counts; the best reference when a prompt has
    several). Recall is the coverage; precision is the length normalisation: a copied dialogue covers the
    reference but most of its words are not in it, so it scores far below the reference (1.0). Lexical, and
    without the learned reward model, so it cannot drift with the policy; add ``reward_model`` as a second
    term where a learned judgement is wanted. Gamed by: a list of likely keywords without grammar (word order
    is ignored), and by negating the reference ("was not laid off" scores as "was laid off"): pair it with
    ``faithful``. Paraphrase scores as a miss.

faithful
    Share of the summary's distinct content words, each with its polarity, that the dialogue shows with the same
    polarity: a word absent from the dialogue is invented, and a word inside a negation's scope ("not", "never",
    "n't", up to NEGATION_SCOPE tokens on, within a clause) where the dialogue only has it outside one (or the
    reverse) is contradicted. Names and numbers are content words, so a wrong place or a wrong number of years
    counts. Gamed by: copying the dialogue (1.0, which is why ``summary`` and ``brevity`` pull against it), and
    by saying little (one supported word scores 1.0). Paraphrase ("lost her job" for "laid off") counts as
    invented.
"""

from __future__ import annotations

import re
from collections import Counter

from rlhfpipe.data.summary_prompt import dialogue_of, prompt_key
from rlhfpipe.errors import PipelineError
from rlhfpipe.rewards.cohesion import tokenize
from rlhfpipe.rewards.wordlists import FUNCTION_WORDS

FRAMING_WORDS = frozenset(
    "client clients seeker therapist counsellor counselor person user speaker situation summary".split())
"""words a summary uses to talk about the dialogue rather than about what happened"""
NEGATORS = frozenset("not no never nothing nobody none nor neither cannot without".split())
NEGATION_SCOPE = 3
"""a token is negated when a negator is among the NEGATION_SCOPE tokens before it in its clause"""
_CLAUSE_BREAK = re.compile(r"[.,;:!?\n]+")
_SUFFIXES = ("ing", "ed", "es", "s")


def stem(word: str) -> str:
    """Strip a possessive and one inflectional suffix when at least three letters remain; applied to both sides."""
    word = word.removesuffix("'s")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def is_negator(token: str) -> bool:
    return token in NEGATORS or token.endswith("n't")


def is_content(token: str) -> bool:
    bare = token.removesuffix("'s")
    return bare not in FUNCTION_WORDS and bare not in FRAMING_WORDS and not is_negator(token)


def content_stems(text: str) -> list[str]:
    return [stem(t) for t in tokenize(text) if is_content(t)]


def polar_stems(text: str) -> set[tuple[str, bool]]:
    """Distinct (stem, negated) of the content words of ``text``."""
    out = set()
    for clause in _CLAUSE_BREAK.split(text):
        tokens = tokenize(clause)
        for i, token in enumerate(tokens):
            if is_content(token):
                negated = any(is_negator(t) for t in tokens[max(0, i - NEGATION_SCOPE): i])
                out.add((stem(token), negated))
    return out


def faithfulness(dialogue: str, summary: str) -> float:
    """Share of the summary's (content stem, polarity) pairs that the dialogue shows; 0 without any."""
    claims = polar_stems(summary)
    if not claims:
        return 0.0
    return len(claims & polar_stems(dialogue)) / len(claims)


def coverage_f1(reference: str, summary: str) -> float:
    """Content-word unigram F1 of ``summary`` against ``reference`` (all words where the reference has none)."""
    ref, hyp = Counter(content_stems(reference)), Counter(content_stems(summary))
    if not ref:  # a reference of function words only: compare all its words
        ref, hyp = Counter(map(stem, tokenize(reference))), Counter(map(stem, tokenize(summary)))
    overlap = sum((ref & hyp).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(hyp.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _dialogue(prompt: list[dict]) -> str:
    dialogue = dialogue_of(prompt)
    if dialogue is None:
        raise PipelineError("rewards summary and faithful score summaries of a dialogue, and a prompt is not a summary "
                            f"prompt ({prompt_key(prompt)[:60]!r}); prepare the data with data.task=summary")
    return dialogue


def faithful_scores(prompts: list[list[dict]], responses: list[str]) -> list[float]:
    return [faithfulness(_dialogue(p), r) for p, r in zip(prompts, responses)]


def summary_scores(prompts: list[list[dict]], responses: list[str], references: dict[str, list[str]]) -> list[float]:
    scores = []
    for p, r in zip(prompts, responses):
        refs = references.get(prompt_key(p)) if dialogue_of(p) is not None else None
        if not refs:
            _dialogue(p)  # not a summary prompt at all: say so
            raise PipelineError(f"reward summary: no reference summary for the prompt {prompt_key(p)[:60]!r}; "
                                "it scores the prompts of the prepared prompt sets, whose rows carry the reference")
        scores.append(max(coverage_f1(ref, r) for ref in refs))
    return scores
