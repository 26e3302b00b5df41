"""The reward registry: named rewards combined by weight, shared by PPO, GRPO and MOODPO.

Every reward maps (prompts, responses) to one float per response. ``combine`` returns the weighted
sum and each component, so trainers can log what drove the total.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhfpipe.config import CohesionWeights, RewardTerm
from rlhfpipe.errors import PipelineError

BREVITY_WORDS = 40
"""responses of this many words or more get brevity 0"""


def brevity(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
    """1 - min(words, 40) / 40: pulls against rewards that favour saying more. A response with no words
    gets 0, not 1: saying nothing is not a brief answer, and with 1 MOODPO collapsed to empty responses."""
    words = [len(r.split()) for r in responses]
    return torch.tensor([1.0 - min(n, BREVITY_WORDS) / BREVITY_WORDS if n else 0.0 for n in words])


def length_floor(prompts: list[list[dict]], responses: list[str], floor_words: float) -> torch.Tensor:
    """-(1 - words / floor) below ``floor_words``, 0 at or above it, in [-1, 0]: a policy cannot buy reward-model
    or empathy score by cutting its answers short, and an answer of ordinary length loses nothing. The floor is a
    fraction of the SFT policy's own length (ppo.length_floor), so it asks the policy to keep its length, not to
    reach one a corpus would set. Gameable by padding to the floor; words past it are not paid for. A floor of 0
    words (an SFT policy that answers with nothing) asks for nothing: every answer scores 0."""
    words = torch.tensor([len(r.split()) for r in responses], dtype=torch.float32)
    if floor_words <= 0:
        return torch.zeros_like(words)
    return -(1.0 - words.clamp(max=floor_words) / floor_words)


def empathy(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
    """VADER compound of the response, in [-1, 1]."""
    from rlhfpipe.rewards.empathy import empathy_scores

    return torch.tensor(empathy_scores(responses), dtype=torch.float32)


def cohesion(prompts: list[list[dict]], responses: list[str], weights: CohesionWeights) -> torch.Tensor:
    """TAACO-style cohesion of the dialogue window the response closes, in [0, 1] (default weights unless given)."""
    from rlhfpipe.rewards.cohesion import cohesion_rewards

    windows = [[m["content"] for m in p if m["role"] != "system"] + [r] for p, r in zip(prompts, responses)]
    return torch.tensor(cohesion_rewards(windows, weights), dtype=torch.float32)


def faithful(prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
    """Share of a summary's content words the dialogue in its prompt supports, in [0, 1] (summary task)."""
    from rlhfpipe.rewards.summary import faithful_scores

    return torch.tensor(faithful_scores(prompts, responses), dtype=torch.float32)


def summary(prompts: list[list[dict]], responses: list[str], references: dict[str, list[str]]) -> torch.Tensor:
    """Content-word F1 of a summary against its prompt's reference summary, in [0, 1] (summary task)."""
    from rlhfpipe.rewards.summary import summary_scores

    return torch.tensor(summary_scores(prompts, responses, references), dtype=torch.float32)


class RewardRegistry:
    """Resolves reward names; the reward model, the cohesion weights and the reference summaries (prompt key ->
    references, rlhfpipe.data.summary_prompt.summary_references) are injected, as a stage loads them."""

    def __init__(self, reward_model=None, normalize_reward_model: bool = True, batch_size: int = 64,
                 cohesion_weights: CohesionWeights | None = None, references: dict[str, list[str]] | None = None,
                 length_floor_fraction: float = 0.0):
        """``length_floor_fraction``: the length_floor reward's floor as a fraction of the SFT mean words that the reward
        model's statistics carry (0 = that reward is not available)."""
        self.functions: dict[str, Callable] = {"brevity": brevity, "empathy": empathy, "faithful": faithful}
        if length_floor_fraction > 0 and reward_model is not None:
            floor_words = length_floor_fraction * reward_model.sft_words()
            self.functions["length_floor"] = lambda p, r: length_floor(p, r, floor_words)
        if cohesion_weights is not None:
            self.functions["cohesion"] = lambda p, r: cohesion(p, r, cohesion_weights)
        if references is not None:
            self.functions["summary"] = lambda p, r: summary(p, r, references)
        if reward_model is not None:
            self.functions["reward_model"] = lambda p, r: reward_model.score(
                p, r, batch_size=batch_size, normalize=normalize_reward_model)

    def score(self, name: str, prompts: list[list[dict]], responses: list[str]) -> torch.Tensor:
        if name not in self.functions:
            raise PipelineError(f"reward {name!r} needs its model, weights or references; "
                                f"known here: {', '.join(sorted(self.functions))}")
        return self.functions[name](prompts, responses).float()

    def combine(self, terms: list[RewardTerm], prompts: list[list[dict]], responses: list[str]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(B,) weighted sum over ``terms`` and the (B,) score of each term."""
        components = {t.name: self.score(t.name, prompts, responses) for t in terms}
        total = sum(t.weight * components[t.name] for t in terms)
        return total, components
