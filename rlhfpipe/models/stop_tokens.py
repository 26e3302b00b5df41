"""The tokens that end an assistant turn: EOS, and whatever the chat template closes a turn with.

A ChatML template (Qwen, SmolLM2) ends a turn with <|im_end|>, Llama 3 with <|eot_id|>, Gemma with
<end_of_turn>; none of them need equal ``eos_token``. A sampler that stops at EOS only runs past the end of
every turn until max_new_tokens, and PPO would then penalise each response as missing its EOS.
"""

from __future__ import annotations

MARKER = "\u2063stop-probe\u2063"


def template_turn_end(tokenizer) -> int | None:
    """The special token the chat template writes right after an assistant message, or None."""
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": MARKER}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    if MARKER not in text:
        return None
    suffix = text.split(MARKER, 1)[1]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    return ids[0] if ids and ids[0] in set(tokenizer.all_special_ids) else None


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """EOS first, then the template's turn end and any further EOS ids of ``model``'s generation config."""
    ids = [tokenizer.eos_token_id]
    extra = [template_turn_end(tokenizer)]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        eos = generation_config.eos_token_id
        extra += eos if isinstance(eos, list) else [eos]
    for i in extra:
        if i is not None and i not in ids:
            ids.append(int(i))
    return ids
