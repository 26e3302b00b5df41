"""Batched sampling with the KV cache, returning the log-probs of the sampled tokens.

A plain loop instead of ``model.generate``: for models of a few million parameters the per-token
overhead of ``generate`` (logits processors, stopping criteria, cache bookkeeping) costs more than
the forward itself, and PPO needs the sampling log-probs anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Generation:
    responses: torch.Tensor
    """(B, T) sampled ids; every position after the first EOS holds pad"""
    logprobs: torch.Tensor
    """(B, T) log-prob of each sampled token under softmax(logits / temperature); 0 after EOS"""


def pad_batch(tokenizer, texts: list[str], padding_side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize already-templated ``texts`` (no special tokens added) into padded (input_ids, attention_mask)."""
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        cols = slice(width - len(x), width) if padding_side == "left" else slice(0, len(x))
        input_ids[i, cols] = torch.tensor(x, dtype=torch.long)
        attention_mask[i, cols] = 1
    return input_ids, attention_mask


def encode_prompts(tokenizer, prompts: list[list[dict]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Chat-template the prompts and left-pad them, so every response starts at the same column."""
    return pad_batch(tokenizer, [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                                 for p in prompts])


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions count real tokens only, so left padding does not shift the rotary phases."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def sample_from(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(B,) one draw per row of (B, V) ``probs`` by inverting the CDF with one uniform per row.

    Exact like ``torch.multinomial``, which draws V exponentials per row: on CPU that cost 15% of a
    decoding step of the default model. A token of probability 0 is never drawn: ``right=True`` picks
    the first cumulative sum strictly above the uniform.
    """
    cdf = probs.cumsum(-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=probs.shape[-1] - 1).squeeze(-1)


@torch.no_grad()
def sample(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_token_id: int | list[int],
    pad_token_id: int,
    generator: torch.Generator | None = None,
) -> Generation:
    """Sample up to ``max_new_tokens`` per row; ``temperature == 0`` means greedy. A row finishes at the first
    of the ``eos_token_id`` ids (one id, or every end-of-turn id: see stop_tokens.stop_token_ids)."""
    batch = input_ids.shape[0]
    device = input_ids.device
    stops = torch.as_tensor(eos_token_id, device=device).reshape(-1)
    responses = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logprobs = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    mask = attention_mask.clone()
    positions = position_ids_from_mask(mask)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    next_position = positions[:, -1:] + 1
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        if temperature > 0:
            logp = torch.log_softmax(logits / temperature, dim=-1)
            token = sample_from(logp.exp(), generator)
        else:
            logp = torch.log_softmax(logits, dim=-1)
            token = logp.argmax(-1)
        token_logp = logp.gather(-1, token[:, None]).squeeze(-1)
        token = torch.where(finished, torch.full_like(token, pad_token_id), token)
        responses[:, t] = token
        logprobs[:, t] = torch.where(finished, torch.zeros_like(token_logp), token_logp)
        finished |= torch.isin(token, stops)
        if bool(finished.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
            past_key_values=cache, use_cache=True,
        )
        cache = out.past_key_values
        next_position = next_position + 1
    return Generation(responses, logprobs)


def decode(tokenizer, responses: torch.Tensor) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(responses, skip_special_tokens=True)]


def generate_texts(
    model, tokenizer, prompts: list[list[dict]], *, batch_size: int, max_new_tokens: int, temperature: float,
    seed: int, progress=None,
) -> list[str]:
    """Responses to ``prompts`` in order; the same seed and batch size give the same texts."""
    from rlhfpipe import devices
    from rlhfpipe.models.stop_tokens import stop_token_ids

    device = devices.model_device(model)
    generator = devices.generator(seed, device)
    texts: list[str] = []
    model.eval()
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = encode_prompts(tokenizer, prompts[start:start + batch_size])
        gen = sample(
            model, input_ids.to(device), attention_mask.to(device), max_new_tokens=max_new_tokens, temperature=temperature,
            eos_token_id=stop_token_ids(tokenizer, model), pad_token_id=tokenizer.pad_token_id, generator=generator,
        )
        texts += decode(tokenizer, gen.responses)
        if progress is not None:
            progress.update(input_ids.shape[0])
    return texts
