"""Evaluation metrics and report rendering: pure functions over texts, scores and log-probs.

Policy-level metrics (empathy ratio, win rate, distinct-n, ROUGE-L, KL to the reference), reward
model diagnostics (pairwise accuracy, calibration, bootstrap intervals), and the markdown for the
summary table and the ranked-samples page. No model is loaded here; callers pass what they scored.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from rouge_score import rouge_scorer

from rlhfpipe.errors import PipelineError
from rlhfpipe.rewards.empathy import is_empathetic, vader_compound
from rlhfpipe.training.ppo_math import kl_estimate

LABELS = ("BEST", "MEDIUM", "WORST")
MISSING = "–"
"""How a metric without a value (e.g. ROUGE-L where no reference exists) shows in a table."""


def _mean(values: Sequence[float], what: str) -> float:
    if len(values) == 0:
        raise ValueError(f"{what}: needs at least one value")
    return float(np.mean(values))


def _paired(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: lengths differ ({len(a)} vs {len(b)})")


# --------------------------------------------------------------------------------------------------
# Policy metrics
# --------------------------------------------------------------------------------------------------
def empathy_ratio(texts: list[str]) -> float:
    """Share of texts whose VADER compound is >= EMPATHY_THRESHOLD."""
    return _mean([float(is_empathetic(c)) for c in vader_compound(texts)], "empathy_ratio")


def mean_compound(texts: list[str]) -> float:
    return _mean(vader_compound(texts), "mean_compound")


def _win_tie_loss(a: Sequence[float], b: Sequence[float], what: str) -> float:
    """Mean over pairs of 1 (a > b), 0.5 (exactly equal), 0 (a < b)."""
    _paired(a, b, what)
    return _mean([1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b)], what)


def win_rate(scores: Sequence[float], baseline_scores: Sequence[float]) -> float:
    """Paired win rate of ``scores`` over ``baseline_scores`` (same prompts, same order); ties 0.5."""
    return _win_tie_loss(scores, baseline_scores, "win_rate")


def paired_win_rate(samples: list[dict], baseline_samples: list[dict]) -> float:
    """Win rate of ``samples`` over ``baseline_samples``, paired by prompt id (every id in both)."""
    baseline = {s["id"]: s["score"] for s in baseline_samples}
    if set(baseline) != {s["id"] for s in samples}:
        raise PipelineError("the policies were evaluated on different prompts; rerun the evaluate stages")
    return win_rate([s["score"] for s in samples], [baseline[s["id"]] for s in samples])


def reward_gain_in_sft_std(policy_mean: float, sft_mean: float, sft_std: float) -> float:
    """(policy mean - SFT mean) / SFT std of the reward-model score on the same prompts: the effect
    size the PPO target (>= 1.0) is stated in, comparable across reward models of different scale."""
    if not sft_std > 0:
        raise ValueError(f"reward_gain_in_sft_std: SFT reward std must be > 0, got {sft_std}")
    return (policy_mean - sft_mean) / sft_std


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams, pooled over texts (lower-cased whitespace tokens).

    n-grams do not cross text boundaries. 0.0 when no text has n tokens.
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be >= 1, got {n}")
    grams = [
        tuple(tokens[i:i + n])
        for tokens in (text.lower().split() for text in texts)
        for i in range(len(tokens) - n + 1)
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


@functools.lru_cache(maxsize=1)
def _rouge() -> rouge_scorer.RougeScorer:
    # stateless; cached because the preference filter scores one pair per call
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_pairwise(reference: str, hypothesis: str) -> float:
    """ROUGE-L F-measure of one hypothesis against one reference, in [0, 1]."""
    return _rouge().score(reference, hypothesis)["rougeL"].fmeasure


def rouge_l(references: list[str | None], hypotheses: list[str]) -> float | None:
    """Mean ROUGE-L F-measure over pairs that have a reference; None when none has one.

    A prompt without a gold reply (reference None) is skipped rather than scored 0.
    """
    _paired(references, hypotheses, "rouge_l")
    scores = [rouge_l_pairwise(ref, hyp) for ref, hyp in zip(references, hypotheses) if ref is not None]
    return float(np.mean(scores)) if scores else None


def sequence_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-response KL estimate: sum_t (logprobs - ref_logprobs) * mask, (B, T) -> (B,).

    ``logprobs`` / ``ref_logprobs`` are the log-probabilities of the sampled response tokens under
    the policy and the reference; ``mask`` is 1 on response tokens, 0 on padding. This is the k1
    estimator: unbiased for KL(policy || ref) only when the responses were sampled from the policy,
    and a single sample can be negative; average over responses before reading it as a KL.
    """
    return (kl_estimate(logprobs, ref_logprobs, "k1") * mask.to(logprobs.dtype)).sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# Reward-model diagnostics and intervals
# --------------------------------------------------------------------------------------------------
def rank_labels(scores: list[float]) -> list[str]:
    """BEST for the highest score, WORST for the lowest, MEDIUM for the rest; (N,) -> (N,).

    Ties: the first maximum is BEST and the last minimum WORST, so with N >= 3 both labels always
    land on different completions, even when all scores are equal.
    """
    if len(scores) < 3:
        raise ValueError(f"rank_labels: needs >= 3 scores for BEST/MEDIUM/WORST, got {len(scores)}")
    best = scores.index(max(scores))
    worst = len(scores) - 1 - scores[::-1].index(min(scores))
    return ["BEST" if i == best else "WORST" if i == worst else "MEDIUM" for i in range(len(scores))]


def bootstrap_ci(
    values: list[float] | np.ndarray, samples: int, seed: int, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the mean of ``values`` (N,).

    Draws ``samples`` resamples of size N with replacement from ``default_rng(seed)``, so the
    interval is a pure function of its arguments.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0 or samples < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(
            f"bootstrap_ci: needs values, samples >= 1 and 0 < alpha < 1; "
            f"got {data.size} values, samples={samples}, alpha={alpha}"
        )
    resamples = np.random.default_rng(seed).integers(0, data.size, size=(samples, data.size))
    means = data[resamples].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def pairwise_accuracy(chosen_scores: Sequence[float], rejected_scores: Sequence[float]) -> float:
    """Share of pairs the reward model orders correctly (chosen > rejected); ties count 0.5."""
    return _win_tie_loss(chosen_scores, rejected_scores, "pairwise_accuracy")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |x|, unlike 1 / (1 + exp(-x))
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def calibration_bins(
    chosen_scores: Sequence[float], rejected_scores: Sequence[float], bins: int
) -> list[dict]:
    """Reliability table of the Bradley-Terry probability p = sigmoid(chosen - rejected).

    Each pair contributes (p, outcome 1) and (1 - p, outcome 0): the pair's order in the data is
    arbitrary, and without the mirror every outcome would be 1. Predictions fall into ``bins``
    equal-width bins over [0, 1] (p = 1 goes in the last). Returns one dict per non-empty bin:
    {"bin": index, "predicted": mean p, "observed": share of outcome 1, "count": predictions}.
    """
    _paired(chosen_scores, rejected_scores, "calibration_bins")
    if bins < 1:
        raise ValueError(f"calibration_bins: bins must be >= 1, got {bins}")
    p = _sigmoid(np.asarray(chosen_scores, dtype=float) - np.asarray(rejected_scores, dtype=float))
    predicted = np.concatenate([p, 1.0 - p])
    outcome = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    return [
        {
            "bin": i,
            "predicted": float(predicted[index == i].mean()),
            "observed": float(outcome[index == i].mean()),
            "count": int((index == i).sum()),
        }
        for i in range(bins)
        if (index == i).any()
    ]


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------
def _fmt(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def summary_markdown(summary: dict[str, dict[str, float | None]], metrics: list[str]) -> str:
    """Table with one row per policy (in ``summary`` order) and one column per metric.

    Values print with 4 decimals; None, or a metric the policy lacks, prints as "–".
    """
    rows = [[policy] + [_fmt(values.get(m)) for m in metrics] for policy, values in summary.items()]
    return _table(["policy", *metrics], rows) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _last_user(prompt: list[dict]) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


def ranked_markdown(ranked: list[dict]) -> str:
    """Ranked-samples page: label means per policy, then each prompt with its ranked completions.

    ``ranked`` rows: {"prompt": [{"role", "content"}, ...], "policy": str, "completions":
    [{"text", "score", "label"}, ...]}; rows sharing a prompt are shown together, in first-seen
    order. The top table gives, per policy, the mean score of its BEST / MEDIUM / WORST
    completions and of all of them.
    """
    policies = list(dict.fromkeys(row["policy"] for row in ranked))
    stats = []
    for policy in policies:
        done = [c for row in ranked if row["policy"] == policy for c in row["completions"]]
        by_label = [[c["score"] for c in done if c["label"] == label] for label in LABELS]
        means = [float(np.mean(s)) if s else None for s in by_label]
        means.append(_mean([c["score"] for c in done], f"ranked_markdown: policy {policy}"))
        stats.append([policy, *map(_fmt, means)])

    prompts: dict[str, list[dict]] = {}
    for row in ranked:
        prompts.setdefault(repr(row["prompt"]), []).append(row)
    parts = ["# Ranked samples", "", "Mean score by label:", "", _table(["policy", *LABELS, "all"], stats)]
    for number, rows in enumerate(prompts.values(), start=1):
        parts += ["", f"## Prompt {number}", "", "> " + _one_line(_last_user(rows[0]["prompt"]))]
        for row in rows:
            parts += ["", f"**{row['policy']}**", ""]
            parts += [
                f"- {c['label']} ({_fmt(c['score'])}): {_one_line(c['text'])}"
                for c in sorted(row["completions"], key=lambda c: c["score"], reverse=True)
            ]
    return "\n".join(parts) + "\n"
