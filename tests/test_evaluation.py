"""Evaluation metrics against hand-computed values, and the markdown they render to."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from rlhfpipe.evaluation import (
    bootstrap_ci,
    calibration_bins,
    distinct_n,
    empathy_ratio,
    mean_compound,
    pairwise_accuracy,
    rank_labels,
    ranked_markdown,
    rouge_l,
    rouge_l_pairwise,
    sequence_kl,
    summary_markdown,
    win_rate,
)
from rlhfpipe.rewards.empathy import vader_compound

POSITIVE = "I am so glad you reached out, you are doing great."
NEGATIVE = "This is terrible and I hate it."
NEUTRAL = "The meeting is on Tuesday at noon."


# --- policy metrics -------------------------------------------------------------------------------
def test_empathy_ratio_on_hand_labelled_sentences():
    assert empathy_ratio([POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx(1 / 3)
    assert empathy_ratio([POSITIVE, POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx(2 / 4)
    assert empathy_ratio([NEUTRAL]) == 0.0


def test_mean_compound_is_the_mean_of_the_scores():
    pos, neg, neu = vader_compound([POSITIVE, NEGATIVE, NEUTRAL])
    assert mean_compound([POSITIVE, NEGATIVE, NEUTRAL]) == pytest.approx((pos + neg + neu) / 3)
    with pytest.raises(ValueError):
        mean_compound([])


def test_win_rate_counts_ties_as_half():
    assert win_rate([1, 2, 3], [1, 1, 4]) == pytest.approx((0.5 + 1 + 0) / 3)
    assert win_rate([5, 5], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="lengths differ"):
        win_rate([1, 2], [1])


def test_distinct_n_by_hand():
    texts = ["the cat sat", "The cat ran"]
    # unigrams: the cat sat the cat ran -> 4 distinct of 6
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    # bigrams: (the cat) (cat sat) (the cat) (cat ran) -> 3 distinct of 4; none spans the two texts
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(texts, 4) == 0.0
    assert distinct_n([], 1) == 0.0


def test_rouge_l_skips_missing_references():
    refs = ["the cat sat on the mat", None, "hello there"]
    hyps = ["the cat sat", "anything at all", "hello there"]
    # pair 1: LCS 3, precision 3/3, recall 3/6 -> F = 2/3; pair 3: identical -> 1; pair 2 skipped
    assert rouge_l_pairwise(refs[0], hyps[0]) == pytest.approx(2 / 3)
    assert rouge_l(refs, hyps) == pytest.approx((2 / 3 + 1) / 2)
    assert rouge_l([None, None], ["a", "b"]) is None


def test_sequence_kl_matches_hand_computation():
    logprobs = torch.tensor([[-0.5, -1.0], [-0.1, -2.0]])
    ref_logprobs = torch.tensor([[-0.7, -0.4], [-0.3, -0.5]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # row 0: (-0.5 + 0.7) + (-1.0 + 0.4) = -0.4; row 1: (-0.1 + 0.3) + padding = 0.2
    kl = sequence_kl(logprobs, ref_logprobs, mask)
    assert kl.shape == (2,)
    assert torch.allclose(kl, torch.tensor([-0.4, 0.2]))


# --- reward-model diagnostics ---------------------------------------------------------------------
def test_rank_labels_with_and_without_ties():
    assert rank_labels([0.3, 0.9, 0.1, 0.5]) == ["MEDIUM", "BEST", "WORST", "MEDIUM"]
    # first maximum is BEST, last minimum is WORST
    assert rank_labels([0.9, 0.9, 0.1, 0.1]) == ["BEST", "MEDIUM", "MEDIUM", "WORST"]
    assert rank_labels([1.0, 1.0, 1.0]) == ["BEST", "MEDIUM", "WORST"]
    with pytest.raises(ValueError, match=">= 3"):
        rank_labels([1.0, 2.0])


def test_bootstrap_ci_is_deterministic_and_contains_the_mean():
    values = np.random.default_rng(0).normal(1.0, 2.0, size=50)
    low, high = bootstrap_ci(values, samples=500, seed=7)
    assert (low, high) == bootstrap_ci(list(values), samples=500, seed=7)
    assert (low, high) != bootstrap_ci(values, samples=500, seed=8)
    assert low < values.mean() < high
    assert bootstrap_ci([3.0, 3.0, 3.0], samples=20, seed=0) == (3.0, 3.0)
    with pytest.raises(ValueError):
        bootstrap_ci([], samples=20, seed=0)


def test_bootstrap_ci_half_widths_match_the_normal_approximation():
    values = np.random.default_rng(0).normal(1.0, 2.0, size=50)
    # alpha 0.2: the 10th/90th percentiles of the resampled means, about mean -/+ 1.2816 standard errors
    expected = 1.2816 * values.std() / math.sqrt(values.size)
    low, high = bootstrap_ci(values, samples=2000, seed=7, alpha=0.2)
    assert values.mean() - low == pytest.approx(expected, rel=0.1)
    assert high - values.mean() == pytest.approx(expected, rel=0.1)


def test_pairwise_accuracy_with_a_tie():
    assert pairwise_accuracy([2.0, 1.0, 0.5, 4.0], [1.0, 1.0, 3.0, 0.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_calibration_bins_by_hand():
    # differences log 4, log 4, 0 -> p = 0.8, 0.8, 0.5 (outcome 1), mirrored 0.2, 0.2, 0.5 (outcome 0)
    rows = calibration_bins([math.log(4), math.log(4), 0.0], [0.0, 0.0, 0.0], bins=4)
    assert [r["bin"] for r in rows] == [0, 2, 3]  # bin 1 is empty and skipped
    assert [r["count"] for r in rows] == [2, 2, 2]
    assert [r["predicted"] for r in rows] == pytest.approx([0.2, 0.5, 0.8])
    assert [r["observed"] for r in rows] == pytest.approx([0.0, 0.5, 1.0])


def test_calibration_bins_extreme_scores_land_in_edge_bins_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = calibration_bins([1000.0], [-1000.0], bins=4)
    assert [(r["bin"], r["predicted"], r["observed"]) for r in rows] == [(0, 0.0, 0.0), (3, 1.0, 1.0)]


# --- markdown -------------------------------------------------------------------------------------
def test_summary_markdown_table():
    summary = {"sft": {"empathy_ratio": 0.5, "rouge_l": None}, "ppo": {"empathy_ratio": 0.123456, "rouge_l": 0.25}}
    lines = summary_markdown(summary, ["empathy_ratio", "rouge_l"]).splitlines()
    assert lines[0] == "| policy | empathy_ratio | rouge_l |"
    assert lines[2] == "| sft | 0.5000 | – |"
    assert lines[3] == "| ppo | 0.1235 | 0.2500 |"
    assert len(lines) == 4


def test_ranked_markdown_orders_completions_and_summarises_labels():
    prompt = [
        {"role": "user", "content": "First message."},
        {"role": "assistant", "content": "I hear you."},
        {"role": "user", "content": "I feel\nso alone lately."},
    ]
    ranked = [
        {"prompt": prompt, "policy": "sft", "completions": [
            {"text": "ok", "score": 0.1, "label": "WORST"},
            {"text": "That sounds hard.", "score": 0.9, "label": "BEST"},
            {"text": "Tell me more.", "score": 0.5, "label": "MEDIUM"},
        ]},
        {"prompt": prompt, "policy": "ppo", "completions": [
            {"text": "a", "score": 0.2, "label": "WORST"},
            {"text": "b", "score": 0.4, "label": "MEDIUM"},
            {"text": "c", "score": 0.6, "label": "MEDIUM"},
            {"text": "d", "score": 1.0, "label": "BEST"},
        ]},
    ]
    page = ranked_markdown(ranked)
    assert "| sft | 0.9000 | 0.5000 | 0.1000 | 0.5000 |" in page
    assert "| ppo | 1.0000 | 0.5000 | 0.2000 | 0.5500 |" in page
    assert page.count("## Prompt") == 1  # both policies' rows share the prompt
    assert "> I feel so alone lately." in page
    assert "First message." not in page
    sft = page[page.index("**sft**"):page.index("**ppo**")]
    assert sft.index("BEST (0.9000): That sounds hard.") < sft.index("MEDIUM (0.5000)") < sft.index("WORST (0.1000): ok")
