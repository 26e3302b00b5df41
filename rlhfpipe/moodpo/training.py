"""One MOODPO iteration: online DPO on pairs that each weight vector ranks among the same samples.

Every training prompt appears ``weights_per_prompt`` times in a batch, each copy with its own weight vector
drawn from Dirichlet(alpha) and shown in the prompt as the weight instruction (rlhfpipe.moodpo.weights).
One step:

1. sample one completion for each copy, under that copy's instruction (on-policy);
2. score every completion on every objective, against the prompt without the instruction;
3. under each copy's weights, pair the best and the worst completion of all the prompt's copies
   (``shared_pairs``): vectors that disagree order the same samples in opposite ways;
4. take one DPO step (against the iteration's starting policy) on those pairs, each shown with its own
   vector's instruction.

TRL's OnlineDPOTrainer samples a fresh pair for every copy of a prompt instead, so no two vectors ever rank the
same two answers, and the only thing the weights change is which of two unrelated samples wins. Trained
that way the default policy improved every objective under every vector and read none of its weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rlhfpipe import devices
from rlhfpipe.config import MoodpoConfig, MoodpoIteration
from rlhfpipe.data.readers.base import column_text, csv_rows
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.policy import response_logprobs
from rlhfpipe.io import read_jsonl
from rlhfpipe.models.generation import decode, encode_prompts, sample
from rlhfpipe.data.summary_prompt import summary_references
from rlhfpipe.models.loading import disable_dropout, load_causal_lm
from rlhfpipe.models.prompt_length import drop_long_prompts
from rlhfpipe.models.stop_tokens import stop_token_ids
from rlhfpipe.moodpo.weights import (dpo_loss, mirrored_pairs, sample_weights, shared_pairs, with_instruction,
                                    without_instruction)
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training.ppo_math import masked_sum, truncate_after_eos


def load_prompts(path: str, prompt_column: str) -> list[list[dict]]:
    """Chat prompts from a prepared prompt set (.jsonl) or from a CSV column (one user message per row)."""
    if path.endswith(".jsonl"):
        return [r["prompt"] for r in read_jsonl(path)]
    if not Path(path).is_file():
        raise PipelineError(f"{path}: file not found (params.yaml: moodpo.prompts)")
    prompts = []
    for row in csv_rows(Path(path)):
        text = column_text(row, prompt_column, "moodpo.prompt_column")
        if not text:
            raise PipelineError(f"{row.where}: empty prompt in column '{prompt_column}'")
        prompts.append([{"role": "user", "content": text}])
    if not prompts:
        raise PipelineError(f"{path}: no prompts")
    return prompts


def fitting_prompts(tokenizer, cfg: MoodpoConfig, path: str) -> tuple[list[list[dict]], int]:
    """The prompts of ``path`` that leave ``moodpo.max_new_tokens`` of ``moodpo.max_length`` for the response once
    the weight instruction is in, and how many were dropped (the instruction's length does not depend on the
    weights: one decimal each)."""
    names = [o.name for o in cfg.objectives]
    return drop_long_prompts(tokenizer, load_prompts(path, cfg.prompt_column), cfg.max_length - cfg.max_new_tokens,
                             "moodpo.max_length", conversation=lambda p: with_instruction(p, names, [0.5] * len(names)))


def objective_registry(names: list[str], prompts_path: str, reward_dir: str, cohesion_weights,
                       device: torch.device) -> RewardRegistry:
    """The rewards the objectives ``names`` need: the reward model is loaded only when one is named, and a
    prepared prompt set (.jsonl) carries the reference summaries (a CSV of prompts carries none)."""
    prepared = read_jsonl(prompts_path) if prompts_path.endswith(".jsonl") else []
    return RewardRegistry(RewardModel(reward_dir, device) if "reward_model" in names else None,
                          cohesion_weights=cohesion_weights, references=summary_references(prepared))


def weighted_prompts(prompts: list[list[dict]], names: list[str], alpha: float, per_prompt: int,
                     it: MoodpoIteration) -> list[dict]:
    """``steps * batch_size`` rows in training order: each prompt (in a seeded order, cycling if there are
    fewer) ``per_prompt`` times in a row, each time with its own weights."""
    n = it.steps * it.batch_size // per_prompt
    rng = np.random.default_rng(it.seed)
    order = np.concatenate([rng.permutation(len(prompts)) for _ in range(-(-n // len(prompts)))])[:n]
    weights = sample_weights(n * per_prompt, len(names), alpha, it.seed)
    return [{"prompt": with_instruction(prompts[i], names, w), "weights": w.tolist()}
            for i, w in zip(np.repeat(order, per_prompt), weights)]


def objective_scores(registry, names: list[str], prompts: list[list[dict]], texts: list[str]) -> torch.Tensor:
    """(B, K) score of each response on each objective, against the prompt without the weight instruction
    (the reward model never saw one)."""
    plain = [without_instruction(p) for p in prompts]
    return torch.stack([registry.score(n, plain, texts) for n in names], dim=1)


def sequence_logprobs(model, queries, query_mask, responses, response_mask) -> torch.Tensor:
    """(B,) summed log-prob of each response (softmax at temperature 1, as DPO's implicit reward is defined)."""
    return masked_sum(response_logprobs(model, queries, query_mask, responses, response_mask, 1.0), response_mask, 1)


def train_moodpo(cfg: MoodpoConfig, it: MoodpoIteration, start_dir: str, tokenizer, rows: list[dict], registry,
                 live, precision: str, device: torch.device):
    """Train one iteration from the policy in ``start_dir`` (also the DPO reference) on ``rows``
    (``weighted_prompts``); return (model, metrics). ``precision`` bf16 runs every forward under bf16 autocast
    over fp32 master weights."""
    names, per_prompt = [o.name for o in cfg.objectives], cfg.weights_per_prompt
    policy = devices.place(load_causal_lm(start_dir, tokenizer), device)
    disable_dropout(policy)
    reference = devices.place(load_causal_lm(start_dir, tokenizer), device).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=it.learning_rate, weight_decay=0.0,
                                  fused=True if device.type in ("cpu", "cuda") else None)
    stops = stop_token_ids(tokenizer, policy)
    generator = devices.generator(it.seed, device)
    history = []
    for step in tqdm(range(it.steps), desc="moodpo steps", unit="step", dynamic_ncols=True):
        batch = rows[step * it.batch_size:(step + 1) * it.batch_size]
        queries, query_mask = (t.to(device) for t in encode_prompts(tokenizer, [r["prompt"] for r in batch]))
        # 1. one sample per copy, under its own instruction
        policy.eval()
        with torch.no_grad(), devices.autocast(precision, device):
            gen = sample(policy, queries, query_mask, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                         eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, generator=generator)
        responses, mask = truncate_after_eos(gen.responses, stops, tokenizer.pad_token_id)
        ended = torch.isin(responses, torch.tensor(stops, device=device)).any(1).cpu()
        # 2.-3. every objective scores every sample; each copy's weights rank all samples of its prompt
        with devices.autocast(precision, device):
            scores = objective_scores(registry, names, [r["prompt"] for r in batch], decode(tokenizer, responses))
        groups = len(batch) // per_prompt
        chosen, rejected, margin = (shared_pairs if cfg.pairs == "shared" else mirrored_pairs)(
            scores.view(groups, per_prompt, -1), torch.tensor([r["weights"] for r in batch]).view(groups, per_prompt, -1),
            cfg.missing_eos_penalty * (~ended).float().view(groups, per_prompt))
        base = torch.arange(groups)[:, None] * per_prompt
        keep = (margin > 0).flatten()
        shown = (base + torch.arange(per_prompt)).flatten()[keep].to(device)  # the copy whose instruction the pair carries
        win, lose = (base + chosen).flatten()[keep].to(device), (base + rejected).flatten()[keep].to(device)
        # 4. one DPO step over the pairs, in grad_accum slices
        policy.train()
        optimizer.zero_grad(set_to_none=True)
        losses, ratios, accurate = [], [], []
        for part in torch.arange(len(shown)).chunk(cfg.grad_accum) if len(shown) else []:
            q, qm = queries[shown[part]].repeat(2, 1), query_mask[shown[part]].repeat(2, 1)
            r = torch.cat([responses[win[part]], responses[lose[part]]])
            rm = torch.cat([mask[win[part]], mask[lose[part]]]).float()
            with devices.autocast(precision, device):
                pol = sequence_logprobs(policy, q, qm, r, rm)
                with torch.no_grad():
                    ref = sequence_logprobs(reference, q, qm, r, rm)
            (pol_c, pol_r), (ref_c, ref_r) = pol.chunk(2), ref.chunk(2)
            loss = dpo_loss(pol_c, pol_r, ref_c, ref_r, it.beta)
            (loss.sum() / len(shown)).backward()
            losses.append(loss.detach())
            ratios.append((pol - ref).detach())
            accurate.append(((pol_c - ref_c) > (pol_r - ref_r)).detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0) if len(shown) else torch.tensor(0.0)
        optimizer.step()
        pairs = torch.stack([chosen, rejected], -1)  # (G, W, 2): does any vector pick another pair?
        logs = {
            "loss": torch.cat(losses).mean().item() if losses else 0.0,
            "grad_norm": grad_norm.item(),
            "objective/scores_margin": margin.flatten()[keep].mean().item() if keep.any() else 0.0,
            "objective/kl": torch.cat(ratios).mean().item() if ratios else 0.0,
            "rewards/accuracies": torch.cat(accurate).float().mean().item() if accurate else 0.0,
            "pairs/kept": keep.float().mean().item(),
            "pairs/contrast": (pairs != pairs[:, :1]).any(-1).any(-1).float().mean().item(),
            "val/contain_eos_token": ended.float().mean().item(),
        }
        for key, value in logs.items():
            live.log_metric(f"train/{key}", value)
        live.log_metric("step", step + 1, plot=False)
        live.next_step()
        history.append(logs)
    metrics = {
        "steps": it.steps,
        "first_scores_margin": round(history[0]["objective/scores_margin"], 4),
        "final_scores_margin": round(history[-1]["objective/scores_margin"], 4),
        "final_kl": round(history[-1]["objective/kl"], 4),
        "final_eos_rate": round(history[-1]["val/contain_eos_token"], 4),
        "pair_contrast": round(float(np.mean([h["pairs/contrast"] for h in history])), 4),
    }
    return policy.eval(), metrics
