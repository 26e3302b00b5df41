"""A cap on prompt length for the stages that generate from prompts.

A prompt over the cap is dropped, not left-truncated: cutting the front of a chat-templated prompt removes
its BOS and role header, so the policy would answer inputs it never saw in SFT. The count of dropped
prompts goes into the stage's metrics, so a cap that bites is visible.
"""

from __future__ import annotations

from rlhfpipe.config import ParamError


def prompt_length(tokenizer, prompt: list[dict]) -> int:
    """Tokens of ``prompt`` as ``encode_prompts`` feeds it to the policy (template and generation header)."""
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def drop_long_prompts(tokenizer, prompts: list, max_length: int, key: str,
                      conversation=lambda p: p) -> tuple[list, int]:
    """(prompts of at most ``max_length`` tokens in their order, number dropped); ``conversation(item)``
    gives the messages of an item. Raises when none is left, naming the params ``key``."""
    kept = [p for p in prompts if prompt_length(tokenizer, conversation(p)) <= max_length]
    if prompts and not kept:
        raise ParamError(key, max_length, f"every one of the {len(prompts)} prompts is longer; raise it")
    return kept, len(prompts) - len(kept)
