"""MOODPO's pieces without a model: weight vectors, the weight instruction, the weighted reward, hypervolume.

The policy learns which objectives matter from a system message of a fixed form,

    weights: reward_model 0.6 empathy 0.3 brevity 0.1

objective names in ``moodpo.objectives`` order, each weight with one decimal, summing to 1. One decimal
keeps the instruction a handful of tokens, and the evaluation grid's vectors among those seen in training.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import torch

from rlhfpipe.errors import PipelineError

DECIMALS = 1
"""weights are multiples of 10**-DECIMALS, so the instruction shows them exactly"""
UNITS = 10 ** DECIMALS
PREFIX = "weights:"


def round_to_units(weights: np.ndarray) -> np.ndarray:
    """(N, K) weights rounded to multiples of 1/UNITS that still sum to 1 (largest remainder method)."""
    scaled = weights * UNITS
    units = np.floor(scaled).astype(int)
    short = UNITS - units.sum(axis=1)  # units still to hand out per row
    order = np.argsort(-(scaled - units), axis=1, kind="stable")  # largest remainder first
    for row, n in enumerate(short):
        units[row, order[row, :n]] += 1
    return units / UNITS


def sample_weights(n: int, k: int, alpha: float, seed: int) -> np.ndarray:
    """(n, k) weight vectors drawn from Dirichlet(alpha, ..., alpha), rounded to one decimal."""
    return round_to_units(np.random.default_rng(seed).dirichlet([alpha] * k, size=n))


def format_instruction(names: list[str], weights) -> str:
    """The system message that tells the policy the weights, e.g. ``weights: reward_model 0.6 empathy 0.4``."""
    return " ".join([PREFIX] + [f"{name} {w:.{DECIMALS}f}" for name, w in zip(names, weights)])


def parse_instruction(text: str, names: list[str]) -> list[float]:
    """Inverse of ``format_instruction`` for the same ``names``; anything else raises."""
    pattern = r"\s+".join([re.escape(PREFIX)] + [rf"{re.escape(n)}\s+(\d+\.\d{{{DECIMALS}}})" for n in names])
    match = re.fullmatch(pattern, text.strip())
    if match is None:
        raise PipelineError(f"not a weight instruction for {', '.join(names)}: {text!r}")
    return [float(v) for v in match.groups()]


def with_instruction(prompt: list[dict], names: list[str], weights) -> list[dict]:
    """The prompt with the weight instruction as a system message just before the client's latest message.

    Not first: the from-scratch toy read what sat near its response far more easily than the start of a
    long history, and the assistant's turn has to follow the user's message in the chat template.
    """
    return prompt[:-1] + [{"role": "system", "content": format_instruction(names, weights)}] + prompt[-1:]


def without_instruction(prompt: list[dict]) -> list[dict]:
    """The prompt as the objectives score it: the reward model never saw weight instructions."""
    return [m for m in prompt if not (m["role"] == "system" and m["content"].startswith(PREFIX))]


def weighted_reward(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(N,) reward from (N, K) objective scores and (N, K) per-row weights: ``(scores * weights).sum(-1)``.

    Each objective keeps its own scale (reward model z-scored with its stored reference statistics,
    VADER compound in [-1, 1], brevity and cohesion in [0, 1]). Standardising each objective over the
    batch instead was tried: it gave brevity, whose spread is a tenth of the reward model's, as much pull,
    and every run collapsed to empty responses (brevity then scored an empty answer 1; compound 0) within 20 steps.
    """
    return (scores * weights).sum(-1)


def rewards_under_every_vector(scores: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """(G, W vectors, W samples): the weighted reward of every sample of a prompt under every vector of that prompt,
    from ``scores`` (G, W, K), ``weights`` (G, W, K) and ``penalty`` (G, W), as ``shared_pairs`` takes them."""
    return weighted_reward(scores[:, None, :, :], weights[:, :, None, :]) - penalty[:, None, :]


def shared_pairs(scores: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DPO pair per weight vector, all drawn from the same samples of a prompt.

    ``scores`` (G, W, K): the K objective scores of the W samples of each of G prompts; ``weights`` (G, W, K):
    the weight vector each sample was drawn under; ``penalty`` (G, W): subtracted from a sample's reward
    under every vector (a completion that never ends). Under the weights of row j, the chosen sample is the
    one of highest weighted reward and the rejected one that of lowest: ``chosen[g, j]``,
    ``rejected[g, j]`` index the prompt's samples, ``margin[g, j] >= 0`` is their reward difference (0: no
    pair). Ranking the same samples under every vector of the prompt is what isolates the weights: when
    objectives conflict, vectors order the same two answers in opposite ways, and only a policy that
    reads its instruction can lower the DPO loss of both pairs.
    """
    rewards = rewards_under_every_vector(scores, weights, penalty)
    best, chosen = rewards.max(-1)
    worst, rejected = rewards.min(-1)
    return chosen, rejected, best - worst


def mirrored_pairs(scores: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pair of samples per prompt, ordered by each weight vector: the pair the vectors disagree on most.

    Same arguments and returns as ``shared_pairs``. For a prompt, samples i and j disagree by
    ``min(max_v (R_vi - R_vj), max_v (R_vj - R_vi))``, R the weighted reward under vector v: how strongly some
    vector prefers i while another prefers j. The pair of largest disagreement is shown under every vector,
    chosen and rejected as that vector orders it (margin 0 where it ties), so vectors that disagree see the
    same two answers with opposite labels. A prompt whose vectors all order every pair alike gives no pair.

    Why: under shared pairs most vectors agree on the best and worst sample, and the gradient that lowers
    their loss regardless of the instruction swamps the part that depends on it. With mirrored labels that
    common part cancels between the vectors that disagree, so what is left is learning to read the
    instruction; the policy gains less under every weighting (see docs/moodpo.md).
    """
    rewards = rewards_under_every_vector(scores, weights, penalty)
    diff = rewards[:, :, :, None] - rewards[:, :, None, :]  # (G, V, W, W): sample i minus sample j under v
    prefer = diff.amax(1)  # (G, W, W): how much the most i-favouring vector prefers i to j
    disagreement = torch.minimum(prefer, prefer.transpose(1, 2))
    groups, _, samples = rewards.shape
    disagreement = disagreement.reshape(groups, -1)
    flat = disagreement.argmax(-1)
    i, j = flat // samples, flat % samples
    pair_diff = diff[torch.arange(groups), :, i, j]  # (G, V): i minus j under every vector
    chosen = torch.where(pair_diff > 0, i[:, None], j[:, None])
    rejected = torch.where(pair_diff > 0, j[:, None], i[:, None])
    has_pair = disagreement[torch.arange(groups), flat] > 0
    margin = pair_diff.abs() * has_pair[:, None]
    return chosen, rejected, margin


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, reference_chosen: torch.Tensor,
             reference_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """(N,) DPO loss from (N,) sequence log-probs: ``-log sigmoid(beta * (chosen log-ratio - rejected log-ratio))``.
    Source: Rafailov et al. 2023, "Direct Preference Optimization", arXiv:2305.18290, eq. 7."""
    logits = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -torch.nn.functional.logsigmoid(beta * logits)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume of the region that the (P, K) ``points`` dominate (maximisation) and that dominates ``reference``.

    Exact, by cells: the distinct coordinates cut space into a grid, and a cell counts when some point
    dominates its upper corner. (P+1)^K cells, fine for the few points of a weight grid.
    Naive equivalent for one point: ``prod(max(p - r, 0))``.
    """
    points = np.maximum(np.asarray(points, dtype=float), reference)  # a coordinate below the reference adds nothing
    if len(points) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([[r], points[:, k]])) for k, r in enumerate(reference)]
    volume = 0.0
    for cell in itertools.product(*(range(1, len(a)) for a in axes)):
        upper = np.array([a[i] for a, i in zip(axes, cell)])
        if (points >= upper).all(axis=1).any():
            volume += float(np.prod([a[i] - a[i - 1] for a, i in zip(axes, cell)]))
    return volume


def responsiveness(grid: np.ndarray, scores: np.ndarray, names: list[str], samples: int = 1000, seed: int = 0) -> dict:
    """Per objective: the mean score over grid vectors giving it its highest weight, and its lowest.

    ``grid`` (G, K) weight vectors and ``scores`` (G, N, K): each objective's score of the responses to
    the same N prompts (same seed) generated under each vector. The policy responds to objective k when
    ``high > low``; ``difference_ci95`` is a paired bootstrap interval of high - low over the prompts,
    and ``significant`` says whether it lies above 0, i.e. whether the response is more than sampling noise.
    """
    from rlhfpipe.evaluation.metrics import bootstrap_ci  # here: evaluation loads ROUGE and VADER, which training never needs

    out = {}
    for k, name in enumerate(names):
        high = scores[grid[:, k] == grid[:, k].max(), :, k].mean(0)  # (N,) per prompt
        low = scores[grid[:, k] == grid[:, k].min(), :, k].mean(0)
        lo_ci, hi_ci = bootstrap_ci(high - low, samples, seed)
        h, lo = float(high.mean()), float(low.mean())
        out[name] = {"high": round(h, 5), "low": round(lo, 5), "responds": bool(h > lo),
                     "difference_ci95": [round(lo_ci, 5), round(hi_ci, 5)], "significant": bool(lo_ci > 0)}
    return out
