"""MOODPO's warm-up: supervised fine-tuning on the best of n samples under each weight vector.

Online DPO learns what the weight instruction means only from which of two samples wins, a few bits per
pair; at the default budget the policy never read its weights. Rewards-in-Context (Yang et al. 2024,
https://arxiv.org/abs/2402.10207, section 3) teaches the conditioning with supervised data instead. Here the
condition is MOODPO's own weight instruction:

1. sample ``samples`` completions per training prompt from the starting policy, with no instruction;
2. score every completion on every objective (against the plain prompt, as MOODPO does);
3. draw ``weights_per_prompt`` weight vectors per prompt; each vector's target is the completion with the
   highest weighted reward, each objective standardised over the prompt's samples (a completion that never
   ends loses ``moodpo.missing_eos_penalty``);
4. fine-tune on (prompt with that vector's instruction -> its target), loss on the completion tokens only.

Vectors that pick different targets for the same prompt are the signal: the same prompt, different
instructions, different answers. The online DPO iterations then start from this policy (also their reference).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from rlhfpipe import devices
from rlhfpipe.config import MoodpoConfig
from rlhfpipe.evaluation.policy import response_logprobs
from rlhfpipe.models.generation import decode, encode_prompts, sample
from rlhfpipe.models.stop_tokens import stop_token_ids
from rlhfpipe.moodpo.training import objective_scores
from rlhfpipe.moodpo.weights import sample_weights, weighted_reward, with_instruction
from rlhfpipe.training.ppo_math import masked_sum, truncate_after_eos


def pick_targets(scores: torch.Tensor, weights: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """(P, W) index of the best of each prompt's n samples under each of its W weight vectors.

    ``scores`` (P, n, K) objective scores, ``weights`` (P, W, K), ``penalty`` (P, n) subtracted from every
    vector's reward (the missing-EOS penalty). Ties go to the lower index.

    Each objective is standardised over the prompt's n samples first, so a weight buys the same pull whatever its
    objective's scale: on raw scores the reward model (spread about 1) outvoted brevity (spread about 0.1) even
    when brevity weighed 0.8, and the briefest sample was rarely the target. Online DPO keeps raw scales
    (``weighted_reward``); there it only ranks two samples, and batch standardisation collapsed it.
    """
    mean, std = scores.mean(1, keepdim=True), scores.std(1, keepdim=True)
    z = (scores - mean) / std.clamp_min(1e-6)
    reward = weighted_reward(z[:, None], weights[:, :, None]) - penalty[:, None]  # (P, W, n)
    return reward.argmax(-1)


def best_of_n_rows(policy, tokenizer, registry, cfg: MoodpoConfig, prompts: list[list[dict]], precision: str,
                   device: torch.device) -> tuple[list[dict], dict]:
    """The warm-up's training rows ``{"prompt": with instruction, "response": token ids}`` and what the
    targets say about the weights (``target_stats``)."""
    warm, names = cfg.warmup, [o.name for o in cfg.objectives]
    rng = np.random.default_rng(warm.seed)
    chosen = [prompts[i] for i in rng.permutation(len(prompts))[:warm.prompts]]
    weights = torch.tensor(sample_weights(len(chosen) * warm.weights_per_prompt, len(names), cfg.alpha, warm.seed),
                           dtype=torch.float32).view(len(chosen), warm.weights_per_prompt, -1)
    stops = stop_token_ids(tokenizer, policy)
    generator = devices.generator(warm.seed, device)
    per_batch = max(1, warm.sample_batch // warm.samples)
    rows, all_scores, all_targets = [], [], []
    policy.eval()
    for start in tqdm(range(0, len(chosen), per_batch), desc="warm-up sampling", unit="batch", dynamic_ncols=True):
        group = chosen[start:start + per_batch]
        copies = [p for p in group for _ in range(warm.samples)]
        queries, query_mask = (t.to(device) for t in encode_prompts(tokenizer, copies))
        with torch.no_grad(), devices.autocast(precision, device):
            gen = sample(policy, queries, query_mask, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                         eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, generator=generator)
            responses, mask = truncate_after_eos(gen.responses, stops, tokenizer.pad_token_id)
            scores = objective_scores(registry, names, copies, decode(tokenizer, responses)).float().cpu()
        ended = torch.isin(responses, torch.tensor(stops, device=responses.device)).any(1).cpu()
        scores = scores.view(len(group), warm.samples, -1)
        w = weights[start:start + len(group)]
        targets = pick_targets(scores, w, cfg.missing_eos_penalty * (~ended).float().view(len(group), warm.samples))
        for p, prompt in enumerate(group):
            for j in range(warm.weights_per_prompt):
                k = p * warm.samples + targets[p, j].item()
                rows.append({"prompt": with_instruction(prompt, names, w[p, j].tolist()),
                             "response": responses[k, :int(mask[k].sum())].tolist()})
        all_scores.append(scores)
        all_targets.append(targets)
    return rows, target_stats(torch.cat(all_scores), weights, torch.cat(all_targets), names)


def target_stats(scores: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, names: list[str]) -> dict:
    """How much the targets depend on the weights: the share of prompts whose vectors picked more than one
    target, and per objective the mean score of the targets picked by vectors that weight it at least 0.5
    (``high``) and at most 0.2 (``low``). A warm-up whose targets do not differ has nothing to teach."""
    picked = torch.gather(scores, 1, targets[..., None].expand(-1, -1, scores.shape[-1]))  # (P, W, K)
    stats = {"target_contrast": round((targets != targets[:, :1]).any(1).float().mean().item(), 4),
             "target_scores": {}}
    for k, name in enumerate(names):
        high, low = weights[..., k] >= 0.5, weights[..., k] <= 0.2
        stats["target_scores"][name] = {
            "high": round(picked[..., k][high].mean().item(), 4) if high.any() else None,
            "low": round(picked[..., k][low].mean().item(), 4) if low.any() else None,
            "all_samples": round(scores[..., k].mean().item(), 4),
        }
    return stats


def train_warmup(policy, tokenizer, rows: list[dict], cfg: MoodpoConfig, live, precision: str,
                 device: torch.device) -> dict:
    """Fine-tune ``policy`` in place on ``rows`` (mean NLL per completion token); return its metrics."""
    warm = cfg.warmup
    optimizer = torch.optim.AdamW(policy.parameters(), lr=warm.learning_rate, weight_decay=0.0,
                                  fused=True if device.type in ("cpu", "cuda") else None)
    rng = np.random.default_rng(warm.seed)
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(warm.epochs)])
    batches = [order[i:i + warm.batch_size] for i in range(0, len(order), warm.batch_size)]
    losses = []
    policy.train()
    for step, batch in enumerate(tqdm(batches, desc="warm-up training", unit="step", dynamic_ncols=True)):
        optimizer.zero_grad(set_to_none=True)
        tokens = sum(len(rows[i]["response"]) for i in batch)
        total = 0.0
        for part in np.array_split(batch, min(warm.grad_accum, len(batch))):
            queries, query_mask = (t.to(device) for t in encode_prompts(tokenizer, [rows[i]["prompt"] for i in part]))
            width = max(len(rows[i]["response"]) for i in part)
            responses = torch.full((len(part), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(part), width))
            for r, i in enumerate(part):
                ids = rows[i]["response"]
                responses[r, :len(ids)], mask[r, :len(ids)] = torch.tensor(ids), 1.0
            responses, mask = responses.to(device), mask.to(device)
            with devices.autocast(precision, device):
                logprobs = response_logprobs(policy, queries, query_mask, responses, mask, 1.0)
            loss = -masked_sum(logprobs.float(), mask, None) / tokens
            loss.backward()
            total += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        losses.append(total)
        live.log_metric("train/loss", total)
        live.log_metric("train/grad_norm", grad_norm.item())
        live.log_metric("step", step + 1, plot=False)
        live.next_step()
    policy.eval()
    tenth = max(1, len(losses) // 10)
    return {"steps": len(losses), "first_loss": round(float(np.mean(losses[:tenth])), 4),
            "final_loss": round(float(np.mean(losses[-tenth:])), 4)}
