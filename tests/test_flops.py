"""The benchmark's FLOP count (bench.flops) against a hand count and against torch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from bench.flops import DecoderShape, forward_flops, sampling_flops

CONFIG = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, attn_implementation="eager")


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_forward_flops_by_hand():
    shape = DecoderShape(block_linear_params=10, num_layers=1, hidden_size=2, head_outputs=3)
    # linear 2*2*10, attention 2*2 * 2 positions * 2 keys * 2 hidden, head 2 * 1 position * 2 * 3
    assert forward_flops(shape, batch=1, new_positions=2, key_length=2, head_positions=1) == 40 + 32 + 12
    # prefill of 2 positions with the last logits, then one decoding step over 3 keys
    assert sampling_flops(shape, batch=1, prompt_length=2, steps=2) == 84 + (20 + 24 + 12)


def test_shapes_of_causal_lm_and_classifier():
    lm = LlamaForCausalLM(LlamaConfig(**CONFIG, tie_word_embeddings=True))
    per_layer = 4 * 32 * 32 + 3 * 32 * 64  # q, k, v, o and gate, up, down
    assert DecoderShape.of(lm) == DecoderShape(2 * per_layer, 2, 32, 100)
    classifier = LlamaForSequenceClassification(LlamaConfig(**CONFIG, num_labels=1))
    assert DecoderShape.of(classifier) == DecoderShape(2 * per_layer, 2, 32, 1)


@torch.no_grad()
def test_forward_and_cached_step_match_torch_flop_counter():
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()
    shape = DecoderShape.of(lm)
    ids = torch.randint(1, 100, (3, 12))
    # rotary embeddings add one tiny matmul per pass, which the count leaves out
    assert forward_flops(shape, 3, 12, 12, 12) == pytest.approx(counted(lambda: lm(ids)), rel=0.01)
    cache = lm(ids[:, :-1], use_cache=True).past_key_values
    step = counted(lambda: lm(ids[:, -1:], past_key_values=cache, use_cache=True))
    assert forward_flops(shape, 3, 1, 12, 1) == pytest.approx(step, rel=0.01)
