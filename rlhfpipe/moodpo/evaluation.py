"""MOODPO over a fixed grid of weight vectors: per-objective means, hypervolume, responsiveness.

Every policy answers the same held-out prompts, with the same seed, once per weight vector, each time
with that vector's weight instruction in the prompt (SFT too, so both are measured the same way). The
objectives score the responses in their own scales: the reward model z-scored with its stored
reference statistics, VADER compound in [-1, 1], brevity and cohesion in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfpipe.config import MoodpoEvalConfig, MoodpoObjective
from rlhfpipe.evaluation.monitors import objective_spread
from rlhfpipe.evaluation.policy import choose
from rlhfpipe.models.generation import generate_texts
from rlhfpipe.moodpo.weights import hypervolume, responsiveness, with_instruction


def grid_key(weights: list[float]) -> str:
    """A metrics key for a weight vector, its weights in tenths: [0.8, 0.1, 0.1] -> w8_1_1."""
    return "w" + "_".join(str(round(w * 10)) for w in weights)


def grid_scores(policy, tokenizer, registry, names: list[str], prompts: list[list[dict]],
                cfg: MoodpoEvalConfig) -> np.ndarray:
    """(G, N, K) score of each objective for the response to each prompt under each grid vector."""
    scores = []
    for weights in cfg.grid:
        texts = generate_texts(policy, tokenizer, [with_instruction(p, names, weights) for p in prompts],
                               batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, seed=cfg.seed)
        scores.append(torch.stack([registry.score(n, prompts, texts) for n in names], dim=1).numpy())
    return np.stack(scores)


def evaluate_grid(policies: dict, tokenizer, registry, objectives: list[MoodpoObjective], rows: list[dict],
                  cfg: MoodpoEvalConfig) -> tuple[dict, dict[str, list[dict]]]:
    """Metrics for every policy in ``policies`` (name -> model) and, per policy, one Pareto row per vector."""
    names = [o.name for o in objectives]
    reference = np.array([o.hv_reference for o in objectives])
    prompts = [r["prompt"] for r in choose(rows, cfg.num_prompts, cfg.seed)]
    grid = np.array(cfg.grid)
    metrics = {"prompts": len(prompts), "hv_reference": dict(zip(names, reference.tolist()))}
    pareto = {}
    for name, policy in policies.items():
        scores = grid_scores(policy, tokenizer, registry, names, prompts, cfg)
        means = scores.mean(1)
        checks = responsiveness(grid, scores, names, seed=cfg.seed)
        spread, score_std = objective_spread(scores)
        metrics[name] = {
            "hypervolume": round(hypervolume(means, reference), 5),
            "responds_to_every_weight": all(c["responds"] for c in checks.values()),
            "significant_for_every_weight": all(c["significant"] for c in checks.values()),
            "responsiveness": checks,
            "spread": dict(zip(names, np.round(spread, 5).tolist())),
            "score_std": dict(zip(names, np.round(score_std, 5).tolist())),
            "by_weights": {grid_key(w): dict(zip(names, np.round(m, 5).tolist())) for w, m in zip(cfg.grid, means)},
        }
        pareto[name] = [{"weights": grid_key(w), **dict(zip(names, np.round(m, 5).tolist()))}
                        for w, m in zip(cfg.grid, means)]
    return metrics, pareto
