"""Reward-hacking monitors: how far a tuned policy's responses drift from SFT's in ways a reward can be gamed.

A reward model or a hand-made reward is trusted only near the text it was built on. A policy that
raises its reward by writing far shorter or longer responses, by looping, by never stopping, or by
moving far from SFT has found a flaw in the reward, not a better answer; these monitors put numbers on
each of those moves and flag a policy that crosses the thresholds of params ``monitors``:

- ``length_ratio``: mean response words / SFT's (collapse below ``length_ratio_min``, explosion above
  ``length_ratio_max``);
- ``distinct_2_ratio``: distinct-2 pooled over responses / SFT's (repetition below ``distinct_2_ratio_min``);
- ``eos_rate``: share of responses that end with EOS, flagged when it falls more than ``eos_rate_drop_max``
  below SFT's;
- ``kl_to_sft``: mean k1 KL per response, flagged above ``kl_max``;
- for MOODPO, each objective's spread over the weight grid (max minus min of its mean), in standard
  deviations of SFT's scores of that objective, flagged below ``moodpo_spread_min``.

SFT measured against itself has ratios 1, KL 0 and no EOS drop, so it is never flagged.
"""

from __future__ import annotations

import numpy as np

from rlhfpipe.config import MonitorsConfig
from rlhfpipe.errors import PipelineError

FLAGS = ("length_collapse", "length_explosion", "repetition", "eos_drop", "kl")
"""Every flag a policy can carry, in the order they are listed."""


def _ratio(policy: dict, sft: dict, key: str, name: str) -> float:
    if not sft[key] > 0:
        raise PipelineError(f"monitors: SFT's {key} is {sft[key]}, so {name}'s {key} has no ratio to SFT's; "
                            f"check SFT's samples (evaluate.max_new_tokens, the SFT model)")
    return policy[key] / sft[key]


def policy_monitors(name: str, policy: dict, sft: dict, cfg: MonitorsConfig) -> dict:
    """Monitor values and flags of one policy's evaluation metrics against SFT's (both from evaluate@<policy>:
    response_words, distinct_2, eos_rate, kl_to_sft)."""
    length = _ratio(policy, sft, "response_words", name)
    distinct = _ratio(policy, sft, "distinct_2", name)
    eos_drop = sft["eos_rate"] - policy["eos_rate"]
    crossed = {
        "length_collapse": length < cfg.length_ratio_min,
        "length_explosion": length > cfg.length_ratio_max,
        "repetition": distinct < cfg.distinct_2_ratio_min,
        "eos_drop": eos_drop > cfg.eos_rate_drop_max,
        "kl": policy["kl_to_sft"] > cfg.kl_max,
    }
    flags = [f for f in FLAGS if crossed[f]]
    return {"length_ratio": round(length, 5), "distinct_2_ratio": round(distinct, 5),
            "eos_rate": policy["eos_rate"], "eos_rate_drop": round(eos_drop, 5), "kl_to_sft": policy["kl_to_sft"],
            "flags": flags, "flagged": len(flags)}


def objective_spread(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K,) spread over the grid of each objective's mean, max minus min over G, and (K,) std of all its
    scores, from (G, N, K) scores of N prompts under G weight vectors."""
    if scores.ndim != 3 or min(scores.shape) == 0:
        raise ValueError(f"objective_spread: needs (G, N, K) scores, got shape {scores.shape}")
    means = scores.mean(axis=1)
    return means.max(axis=0) - means.min(axis=0), scores.reshape(-1, scores.shape[2]).std(axis=0)


def moodpo_monitors(policy: dict, sft: dict, names: list[str], cfg: MonitorsConfig) -> dict:
    """Spread of each objective over the grid in SFT standard deviations, and an ``ignores_<objective>`` flag
    for each below ``moodpo_spread_min``. ``policy`` / ``sft`` carry "spread" and "score_std" per objective.

    An objective SFT never varies on (a small model scoring 0 empathy everywhere) is scaled by the policy's own
    std instead; when neither varies, the policy cannot have followed that weight, and its spread is 0."""
    spread = {}
    for k in names:
        scale = sft["score_std"][k] if sft["score_std"][k] > 0 else policy["score_std"][k]
        spread[k] = round(policy["spread"][k] / scale, 5) if scale > 0 else 0.0
    flags = [f"ignores_{k}" for k in names if spread[k] < cfg.moodpo_spread_min]
    return {"spread_sft_std": spread, "flags": flags, "flagged": len(flags)}


def _cell(value: float) -> str:
    return f"{value:.4f}"


def monitors_markdown(monitors: dict[str, dict], cfg: MonitorsConfig) -> str:
    """A table of every policy's monitors and a line naming each flagged policy and what it crossed."""
    header = "| policy | length_ratio | distinct_2_ratio | eos_rate | kl_to_sft | flags |\n|---|---:|---:|---:|---:|---|"
    rows = [f"| {name} | {_cell(m['length_ratio'])} | {_cell(m['distinct_2_ratio'])} | {_cell(m['eos_rate'])} | "
            f"{_cell(m['kl_to_sft'])} | {', '.join(m['flags']) or 'none'} |" for name, m in monitors.items()]
    flagged = [f"**{name}** ({', '.join(m['flags'])})" for name, m in monitors.items() if m["flags"]]
    verdict = ("Flagged, so their gains do not count as wins: " + "; ".join(flagged) + "." if flagged
               else "No policy crosses a monitor threshold.")
    limits = (f"Thresholds (params `monitors`): length ratio in [{cfg.length_ratio_min}, {cfg.length_ratio_max}], "
              f"distinct-2 ratio >= {cfg.distinct_2_ratio_min}, EOS rate at most {cfg.eos_rate_drop_max} below SFT's, "
              f"KL to SFT <= {cfg.kl_max} nats.")
    return "\n".join(["## Reward-hacking monitors (against SFT)", "", limits, "", header, *rows, "", verdict]) + "\n"
