"""Behaviour that matters at real scale, shown on tiny CPU models: memory of the rollout forwards, prompt caps,
precision, device placement, stop tokens and the value model's start."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from rlhfpipe.config import ParamError
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.modeling import train_tokenizer
from rlhfpipe.prompt_length import drop_long_prompts, prompt_length
from rlhfpipe.training.ppo import PPOModels, ValueHead, forward_policy, rollout_scores

VOCAB, PROMPT, RESPONSE, BATCH = 50_000, 512, 8, 4


def big_vocab_config(**extra) -> LlamaConfig:
    return LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=PROMPT + RESPONSE + 8,
                       pad_token_id=0, tie_word_embeddings=True, **extra)


@pytest.fixture(scope="module")
def big_vocab_policy():
    torch.manual_seed(0)
    return LlamaForCausalLM(big_vocab_config()).eval()


def record_head_outputs(model) -> list[tuple[int, ...]]:
    """Shapes of every LM-head output, i.e. of every logits tensor the model builds."""
    shapes: list[tuple[int, ...]] = []
    model.lm_head.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
    return shapes


def rollout_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (BATCH, PROMPT + RESPONSE), generator=g)
    mask = torch.ones_like(ids)
    return ids, mask, ids[:, PROMPT:]


@pytest.mark.parametrize("value", ["head", "separate"])
def test_rollout_forwards_build_logits_for_response_positions_only_and_in_micro_batches(big_vocab_policy, value):
    # Full-vocabulary logits over all 520 positions of 4 rows would be 4 * 520 * 50k floats = 416 MB; the
    # bound below allows 2 rows (the micro-batch) of RESPONSE + 1 positions: 2 * 9 * 50k floats = 3.6 MB.
    policy = big_vocab_policy
    shapes = record_head_outputs(policy)
    if value == "head":
        value_model = ValueHead(policy.config.hidden_size)
    else:
        torch.manual_seed(1)
        value_model = LlamaForSequenceClassification(big_vocab_config(num_labels=1)).eval()
    models = PPOModels(policy=policy, ref_policy=policy, value_model=value_model)
    ids, mask, responses = rollout_batch()
    ref_logprobs, values = rollout_scores(models, ids, mask, responses, PROMPT, 1.0, chunk=2)
    assert ref_logprobs.shape == values.shape == (BATCH, RESPONSE)
    assert shapes and max(s[0] * s[1] for s in shapes) <= 2 * (RESPONSE + 1)
    assert all(s[-1] == VOCAB for s in shapes)
    # and the chunked log-probs are those of one full-batch forward that slices after the head
    with torch.no_grad():
        full = policy(input_ids=ids, attention_mask=mask).logits[:, PROMPT - 1:-1].log_softmax(-1)
    expected = full.gather(-1, responses[..., None]).squeeze(-1)
    torch.testing.assert_close(ref_logprobs, expected, atol=1e-4, rtol=1e-4)


def test_training_forward_keeps_response_logits_only(big_vocab_policy):
    shapes = record_head_outputs(big_vocab_policy)
    ids, mask, _ = rollout_batch()
    models = PPOModels(policy=big_vocab_policy, ref_policy=None, value_model=None)
    logits, _ = forward_policy(models, ids, mask, PROMPT, 1.0)
    assert logits.shape == (BATCH, RESPONSE, VOCAB)
    assert shapes == [(BATCH, RESPONSE + 1, VOCAB)]


@pytest.fixture(scope="module")
def tokenizer():
    rows = generate_corpus(40, 0)
    return train_tokenizer([u for r in rows for u in r["Utterance"] + r["utt_user_most_recent"]], 400)


def test_long_prompts_are_dropped_and_counted(tokenizer):
    short = [{"role": "user", "content": "Hi."}]
    long = [{"role": "user", "content": "I feel sad today. " * 40}]
    # "<s><|user|>\nHi.</s>\n<|assistant|>\n": the template adds <s>, <|user|>, </s>, <|assistant|> and newlines
    cap = prompt_length(tokenizer, short)
    assert cap < prompt_length(tokenizer, long)
    kept, dropped = drop_long_prompts(tokenizer, [long, short, long], cap, "ppo.max_prompt_length")
    assert kept == [short] and dropped == 2
    with pytest.raises(ParamError, match=r"ppo\.max_prompt_length=.*every one of the 1 prompts"):
        drop_long_prompts(tokenizer, [long], cap, "ppo.max_prompt_length")
