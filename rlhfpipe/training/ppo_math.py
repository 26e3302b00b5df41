"""PPO for language models as pure tensor functions: tensors and floats in, tensors out.

Shapes: B = responses in a batch, T = response positions. ``mask`` is 1 on real response tokens
(up to and including the first EOS) and 0 on padding after it. Names follow Schulman et al. 2017,
Ziegler et al. 2019 and CleanRL (``lastgaelam``, ``pg_loss``, ``vf_loss``, ``clipfrac``, ``approxkl``).

Borrowed details are pinned to their source: "N+" is Huang et al., "The N+ Implementation Details of
RLHF with PPO" (arXiv:2403.17031), and its code vwxyzjn/summarize_from_feedback_details/summarize_from_feedback_details/ppo.py@ee77a9abc31f5338365ee087945c5bcafac7f1ca
(written below as ``N+ ppo.py#L<line>``).
"""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Naive equivalent: ``x[mask.bool()].mean()`` (dim=None).
    Source: N+ ppo.py#L208.
    """
    if mask.sum() == 0:
        raise ValueError("masked_mean: the mask selects nothing")
    return masked_sum(x, mask, dim) / (mask.sum() if dim is None else mask.sum(dim).clamp(min=1))


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Naive equivalent: ``x[mask.bool()].var(unbiased=unbiased)``.
    Source: N+ ppo.py#L216.
    """
    n = mask.sum()
    if n == 0:
        raise ValueError("masked_var: the mask selects nothing")
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        if n < 2:
            raise ValueError("masked_var: an unbiased variance needs at least two selected values")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  all_reduce_sum=None) -> torch.Tensor:
    """(x - mean) / std over the selected entries; with shift_mean=False the mean is added back
    (TRL/OpenAI's reward whitening keeps the reward's sign). Unselected entries come back as 0.

    With ``all_reduce_sum`` (sums a tensor over processes) the statistics cover every process's entries, as
    one process holding them all would whiten (advantages of a rollout split over processes).
    Source: N+ ppo.py#L235.
    """
    if all_reduce_sum is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask, unbiased=mask.sum() > 1)
    else:
        mean, var = masked_mean_var_reduced(x, mask, all_reduce_sum, unbiased=None)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def masked_mean_var_reduced(x: torch.Tensor, mask: torch.Tensor, all_reduce_sum, unbiased: bool | None = True
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over the selected entries of every process: ``all_reduce_sum`` sums a tensor over
    processes. With the identity (one process) the operations, hence the bits, are masked_mean's and masked_var's.
    ``unbiased=None`` corrects the variance only when more than one entry is selected (masked_whiten's choice)."""
    n = all_reduce_sum(mask.sum())
    if n == 0:
        raise ValueError("masked_mean_var_reduced: the mask selects nothing")
    if unbiased is None:
        unbiased = bool(n > 1)
    mean = all_reduce_sum(masked_sum(x, mask)) / n
    var = all_reduce_sum(masked_sum((x - mean) ** 2, mask)) / n
    if unbiased:
        if n < 2:
            raise ValueError("masked_mean_var_reduced: an unbiased variance needs at least two selected values")
        var = var * n / (n - 1)
    return mean, var


def first_true_indices(bools: torch.Tensor) -> torch.Tensor:
    """(B,) index of the first True per row, or T when a row has none.
    Source: N+ ppo.py#L338.
    """
    T = bools.shape[-1]
    positions = torch.arange(T, device=bools.device).expand_as(bools)
    return torch.where(bools, positions, torch.full_like(positions, T)).min(-1).values


def truncate_after_eos(responses: torch.Tensor, eos_token_id: int | list[int],
                       pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace every token after the first EOS (any of the ids given) with pad. Returns (responses, mask); the
    EOS itself is kept and masked in, since choosing to stop is an action the policy is rewarded for.
    Source: N+ ppo.py#L350 and #L665 (truncate at the first EOS; the EOS check).
    """
    stops = torch.as_tensor(eos_token_id, device=responses.device).reshape(-1)
    first_eos = first_true_indices(torch.isin(responses, stops))  # (B,)
    positions = torch.arange(responses.shape[1], device=responses.device)[None, :]
    mask = (positions <= first_eos[:, None]).long()
    return torch.where(mask.bool(), responses, torch.full_like(responses, pad_token_id)), mask


def response_positions(per_position: torch.Tensor, context_length: int) -> torch.Tensor:
    """(B, T, ...) slice of a per-position output over the response: the token at response position t is
    predicted from input position context_length - 1 + t, and the last position predicts nothing.
    Source: N+ ppo.py#L624 and #L640 (logits and values at context_length - 1 : -1).
    """
    return per_position[:, context_length - 1: -1]


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) log-prob of ``labels`` under softmax(logits / temperature).

    Naive equivalent: ``torch.log_softmax(logits / temperature, -1).gather(-1, labels[..., None])[..., 0]``.
    The temperature must be the rollout's: otherwise the first ratio is not 1.
    Source: N+ ppo.py#L625 (logits divided by the sampling temperature).
    """
    logits = logits.float() / temperature
    return torch.gather(logits, -1, labels[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T) entropy of softmax(logits / temperature).
    Source: N+ ppo.py#L762-L763.
    """
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from samples of the policy (Schulman, "Approximating KL").

    k1 = log p - log q (unbiased, can be negative); k3 = (r - 1) - log r with r = q / p (unbiased, >= 0).
    Source: N+ ppo.py#L680 (k1); k3: J. Schulman, "Approximating KL Divergence" (2020).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * KL at every real token, plus the sequence score at the last one.

    Returns (rewards, non_score_reward), both (B, T) and 0 on padding.
    Source: N+ ppo.py#L680-L685 (-kl_coef * KL per token, the score added on the last token).
    """
    non_score_reward = -kl_coef * kl * mask
    last = mask.sum(1).long() - 1  # (B,) index of the last real token (the EOS, if any)
    rewards = non_score_reward.clone()
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last] += scores
    return rewards, non_score_reward


def compute_gae(values: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response positions (Schulman et al. 2016).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}; V and A are 0 past
    the last real token. Returns (advantages, returns = advantages + values), both masked.
    Source: N+ ppo.py#L693-L703 (GAE, returns = advantages + values, advantages whitened).
    """
    values, rewards = values * mask, rewards * mask
    T = rewards.shape[1]
    lastgaelam = torch.zeros_like(rewards[:, 0])
    advantages_reversed = []
    for t in reversed(range(T)):
        next_values = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        lastgaelam = (delta + gamma * lam * lastgaelam) * mask[:, t]
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate: mean over tokens of max(-A r, -A clip(r, 1-eps, 1+eps)), r = exp(logp - old_logp).
    Source: N+ ppo.py#L749-L755 (clipped surrogate, token mean over the mask).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    stats = {
        "clipfrac": masked_mean((pg_losses2 > pg_losses).float(), mask),
        # k3 estimate of KL(old || new), as in CleanRL's approx_kl
        "approxkl": masked_mean((ratio - 1) - log_ratio, mask),
        "ratio": masked_mean(ratio, mask),
    }
    return pg_loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss 0.5 * mean(max((V - R)^2, (clip(V, V_old +- eps) - R)^2)); returns (loss, clipfrac).
    Source: N+ ppo.py#L739-L747 (clipped value loss, 0.5 * max of squares).
    """
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf_losses1 = (values - returns) ** 2
    vf_losses2 = (values_clipped - returns) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    return vf_loss, masked_mean((vf_losses2 > vf_losses1).float(), mask)


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """A fixed coefficient ignores the measured KL."""


class AdaptiveKLController:
    """Ziegler et al. 2019, eq. (2): beta <- beta * (1 + K_beta * e), e = clip(KL / target - 1, -0.2, 0.2),
    with K_beta = n_steps / horizon.
    Source: Ziegler et al. 2019 (arXiv:1909.08593), the log-space proportional controller of the KL coefficient.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
