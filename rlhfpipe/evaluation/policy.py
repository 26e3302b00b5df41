"""Evaluate one policy on held-out prompts with seeded sampling: the numbers behind metrics/eval/<policy>.json."""

from __future__ import annotations

import random

import numpy as np
import torch

from rlhfpipe import devices
from rlhfpipe.config import EvaluateConfig
from rlhfpipe.evaluation import metrics as ev
from rlhfpipe.models.generation import decode, encode_prompts, position_ids_from_mask, sample
from rlhfpipe.models.stop_tokens import stop_token_ids
from rlhfpipe.rewards.cohesion import CohesionWeights, cohesion_rewards
from rlhfpipe.training.ppo_math import logprobs_from_logits, truncate_after_eos


def choose(rows: list[dict], n: int, seed: int) -> list[dict]:
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:n])]


def response_logprobs(model, queries: torch.Tensor, query_mask: torch.Tensor, responses: torch.Tensor,
                      response_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, T) log-probs of ``responses`` under softmax(logits / temperature) of ``model``, one forward pass."""
    attention_mask = torch.cat([query_mask, response_mask], 1)
    # the token at response position t is predicted from input position (prompt length - 1 + t); the head
    # runs on those positions only
    logits = model(input_ids=torch.cat([queries, responses], 1), attention_mask=attention_mask,
                   position_ids=position_ids_from_mask(attention_mask), logits_to_keep=responses.shape[1] + 1).logits
    # the head ran on the last T + 1 positions only; the shift drops the one after the last response token
    return logprobs_from_logits(logits[:, :-1], responses, temperature)


def respond(policy, tokenizer, prompts: list[list[dict]], cfg: EvaluateConfig, temperature: float, seed: int,
            reference=None) -> tuple[list[str], list[float] | None]:
    """Responses and, with a ``reference``, each response's k1 KL estimate to it (None without one)."""
    texts, kls, _ = respond_ended(policy, tokenizer, prompts, cfg, temperature, seed, reference)
    return texts, kls


@torch.no_grad()
def respond_ended(policy, tokenizer, prompts: list[list[dict]], cfg: EvaluateConfig, temperature: float, seed: int,
                  reference=None) -> tuple[list[str], list[float] | None, list[bool]]:
    """``respond``'s responses and KL estimates, and whether each response ended with EOS (within max_new_tokens).

    The policy's log-probs are the sampler's (softmax at the sampling temperature; at temperature 0,
    greedy, at 1), so only the reference needs a forward pass, at that same temperature. A policy
    measured against itself has KL 0 exactly.
    """
    device = devices.model_device(policy)
    generator = devices.generator(seed, device)
    stops = stop_token_ids(tokenizer, policy)
    logit_temperature = temperature if temperature > 0 else 1.0
    texts, kls, ended = [], [], []
    for start in range(0, len(prompts), cfg.batch_size):
        queries, query_mask = encode_prompts(tokenizer, prompts[start:start + cfg.batch_size])
        queries, query_mask = queries.to(device), query_mask.to(device)
        gen = sample(policy, queries, query_mask, max_new_tokens=cfg.max_new_tokens, temperature=temperature,
                     eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, generator=generator)
        responses, mask = truncate_after_eos(gen.responses, stops, tokenizer.pad_token_id)
        texts += decode(tokenizer, responses)
        ended += (gen.responses == tokenizer.eos_token_id).any(dim=1).tolist()
        if reference is policy:
            kls += [0.0] * len(responses)
        elif reference is not None:
            ref_logprobs = response_logprobs(reference, queries, query_mask, responses, mask, logit_temperature)
            kls += ev.sequence_kl(gen.logprobs, ref_logprobs, mask.float()).tolist()
    return texts, kls if reference is not None else None, ended


def evaluate_policy(name: str, policy, sft, tokenizer, rm, rows: list[dict], cfg: EvaluateConfig,
                    cohesion: CohesionWeights) -> tuple[dict, list[dict]]:
    """Metrics of one policy and its scored samples; the win rate against SFT is paired up from the
    samples of both by the compare stage (``evaluation.paired_win_rate``), so SFT is sampled once."""
    rows = choose(rows, cfg.num_prompts, cfg.seed)
    prompts = [r["prompt"] for r in rows]
    texts, kls, ended = respond_ended(policy, tokenizer, prompts, cfg, cfg.temperature, cfg.seed, reference=sft)
    scores = rm.score(prompts, texts).tolist()
    windows = [[m["content"] for m in p if m["role"] != "system"] + [t] for p, t in zip(prompts, texts)]
    metrics = {
        "reward_mean": float(np.mean(scores)),
        "reward_std": float(np.std(scores)),
        "reward_normalized_mean": float((np.mean(scores) - rm.mean) / rm.std),
        "empathy_ratio": ev.empathy_ratio(texts),
        "vader_compound_mean": ev.mean_compound(texts),
        "rouge_l": ev.rouge_l([r.get("reference") for r in rows], texts),
        "kl_to_sft": float(np.mean(kls)),
        "response_words": float(np.mean([len(t.split()) for t in texts])),
        "distinct_1": ev.distinct_n(texts, 1),
        "distinct_2": ev.distinct_n(texts, 2),
        "eos_rate": float(np.mean(ended)),
        "cohesion": float(np.mean(cohesion_rewards(windows, cohesion))),
        "prompts": len(rows),
    }
    metrics = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}
    samples = [{"id": r["id"], "prompt": r["prompt"], "reference": r.get("reference"), "response": t,
                "score": round(s, 5), "kl_to_sft": round(k, 5)} for r, t, s, k in zip(rows, texts, scores, kls)]
    return metrics, samples


def ranked_samples(name: str, policy, tokenizer, rm, rows: list[dict], cfg: EvaluateConfig) -> list[dict]:
    """Fixed prompts, several sampled completions each, labelled BEST / MEDIUM / WORST by the reward model."""
    rows = choose(rows, cfg.ranked_prompts, cfg.seed + 1)
    prompts = [r["prompt"] for r in rows for _ in range(cfg.ranked_completions)]
    texts, _ = respond(policy, tokenizer, prompts, cfg, cfg.ranked_temperature, cfg.seed + 1)
    scores = rm.score(prompts, texts).tolist()
    out = []
    for i, row in enumerate(rows):
        block = slice(i * cfg.ranked_completions, (i + 1) * cfg.ranked_completions)
        labels = ev.rank_labels(scores[block])
        out.append({"prompt": row["prompt"], "policy": name, "completions": [
            {"text": t, "score": round(s, 5), "label": lab} for t, s, lab in zip(texts[block], scores[block], labels)]})
    return out
