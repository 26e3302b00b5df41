"""The benchmark's FLOP count (bench.flops) against a hand count and against torch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from bench.flops import DecoderShape, forward_flops, matmul_gflops, sampling_flops

GQA_CONFIG = dict(vocab_size=100, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=6,
                  num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0, attn_implementation="eager")
CONFIG = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, attn_implementation="eager")


def counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_forward_flops_by_hand():
    shape = DecoderShape(block_linear_params=10, num_layers=1, hidden_size=2, head_outputs=3, attention_width=2)
    # linear 2*2*10, attention 2*2 * 2 positions * 2 keys * 2 hidden, head 2 * 1 position * 2 * 3
    assert forward_flops(shape, batch=1, new_positions=2, key_length=2, head_positions=1) == 40 + 32 + 12
    # prefill of 2 positions with the last logits, then one decoding step over 3 keys
    assert sampling_flops(shape, batch=1, prompt_length=2, steps=2) == 84 + (20 + 24 + 12)
    # attention products scale with the query width (heads x head_dim), not the hidden size: 2*2 * 2 * 2 * 5
    wide = DecoderShape(block_linear_params=10, num_layers=1, hidden_size=2, head_outputs=3, attention_width=5)
    assert forward_flops(wide, batch=1, new_positions=2, key_length=2, head_positions=1) == 40 + 80 + 12


def test_shapes_of_causal_lm_and_classifier():
    lm = LlamaForCausalLM(LlamaConfig(**CONFIG, tie_word_embeddings=True))
    per_layer = 4 * 32 * 32 + 3 * 32 * 64  # q, k, v, o and gate, up, down
    assert DecoderShape.of(lm) == DecoderShape(2 * per_layer, 2, 32, 100, 32)
    classifier = LlamaForSequenceClassification(LlamaConfig(**CONFIG, num_labels=1))
    assert DecoderShape.of(classifier) == DecoderShape(2 * per_layer, 2, 32, 1, 32)


def test_shape_of_grouped_query_tied_model():
    # SmolLM2's layout in small: 6 query heads of 8 over 2 key/value heads, head tied to the embeddings
    lm = LlamaForCausalLM(LlamaConfig(**GQA_CONFIG, tie_word_embeddings=True))
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    # q and o 48x48; k and v 48 -> 2 heads x 8 = 16; gate, up, down 48x96
    per_layer = 2 * 48 * 48 + 2 * 48 * 16 + 3 * 48 * 96
    assert DecoderShape.of(lm) == DecoderShape(3 * per_layer, 3, 48, 100, 48)
    # a head_dim that does not divide the hidden size: Q K^T runs over 6 x 12 = 72 columns
    odd = LlamaForCausalLM(LlamaConfig(**{**GQA_CONFIG, "head_dim": 12}, tie_word_embeddings=True))
    per_layer = 2 * 48 * 72 + 2 * 48 * 24 + 3 * 48 * 96
    assert DecoderShape.of(odd) == DecoderShape(3 * per_layer, 3, 48, 100, 72)


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


@torch.no_grad()
@pytest.mark.parametrize("head_dim", [8, 12])
def test_grouped_query_tied_model_matches_torch_flop_counter(head_dim):
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(**{**GQA_CONFIG, "head_dim": head_dim}, tie_word_embeddings=True)).eval()
    shape = DecoderShape.of(lm)
    ids = torch.randint(1, 100, (2, 10))
    assert forward_flops(shape, 2, 10, 10, 10) == pytest.approx(counted(lambda: lm(ids)), rel=0.01)
    cache = lm(ids[:, :-1], use_cache=True).past_key_values
    step = counted(lambda: lm(ids[:, -1:], past_key_values=cache, use_cache=True))
    assert forward_flops(shape, 2, 1, 10, 1) == pytest.approx(step, rel=0.01)
    # logits on the last 4 positions only (logits_to_keep): the head counts 4 rows, the blocks all 10
    assert forward_flops(shape, 2, 10, 10, 4) == pytest.approx(counted(lambda: lm(ids, logits_to_keep=4)), rel=0.01)


def test_matmul_rate_is_measured_in_the_dtype_asked_for(monkeypatch):
    seen = []
    real_mm = torch.mm
    monkeypatch.setattr(torch, "mm", lambda a, b: seen.append((a.dtype, b.dtype, a.shape)) or real_mm(a, b))
    assert matmul_gflops(1, size=64, repeats=2, dtype=torch.bfloat16) > 0
    # one warm-up and two timed products, all 64 x 64 in bf16
    assert seen == [(torch.bfloat16, torch.bfloat16, (64, 64))] * 3
