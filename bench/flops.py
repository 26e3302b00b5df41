"""Model FLOPs of decoder forward passes, counted from shapes: what a benchmark divides by its seconds.

The count is the matmul work of the model (the usual MFU convention): every linear layer of the
decoder blocks, the attention products Q K^T and A V over the whole key length (what the kernels
compute under a causal or padding mask), and the output head on the positions it is applied to.
Grouped-query attention shrinks the key and value projections (counted from their weights) but not
the attention products: every query head still meets every key, so those scale with the query width.
A head tied to the input embeddings is a matmul all the same and counts in full.
Norms, activations, softmax and embedding lookups are left out; they are a few percent at these
sizes. A backward pass costs twice its forward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DecoderShape:
    """What the FLOP count needs from a model."""

    block_linear_params: int
    """weights of every linear layer inside the decoder blocks (attention projections and MLP)"""
    num_layers: int
    hidden_size: int
    head_outputs: int
    """columns of the output head: the vocabulary for a causal LM, 1 for a scalar (value / reward) head"""
    attention_width: int
    """query heads x head dimension: the width of Q K^T and A V (the hidden size unless head_dim says otherwise)"""

    @classmethod
    def of(cls, model) -> "DecoderShape":
        """The shape of a transformers causal LM or sequence classifier (its head read from the model)."""
        head = model.get_output_embeddings() if hasattr(model, "lm_head") else model.score
        blocks = sum(m.weight.numel() for m in model.modules()
                     if isinstance(m, torch.nn.Linear) and m is not head)
        config = model.config
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(blocks, config.num_hidden_layers, config.hidden_size, head.weight.shape[0],
                   config.num_attention_heads * head_dim)


def forward_flops(shape: DecoderShape, batch: int, new_positions: int, key_length: int, head_positions: int) -> int:
    """FLOPs of one forward pass over ``batch`` rows.

    ``new_positions`` go through the blocks (the whole sequence, or one token when decoding with a KV
    cache), each attending over ``key_length`` keys (the cached ones included); the head is applied to
    ``head_positions`` positions per row (all of them, or the last one when sampling or scoring).
    """
    tokens = batch * new_positions
    linear = 2 * tokens * shape.block_linear_params
    attention = 2 * 2 * tokens * key_length * shape.attention_width * shape.num_layers
    head = 2 * batch * head_positions * shape.hidden_size * shape.head_outputs
    return linear + attention + head


def sampling_flops(shape: DecoderShape, batch: int, prompt_length: int, steps: int) -> int:
    """FLOPs of ``rlhfpipe.models.generation.sample`` producing ``steps`` positions: one prefill that keeps the
    last logits, then ``steps - 1`` cached decoding passes, each one key longer."""
    flops = forward_flops(shape, batch, prompt_length, prompt_length, head_positions=1)
    for step in range(1, steps):
        flops += forward_flops(shape, batch, 1, prompt_length + step, head_positions=1)
    return flops


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matmul rate in ``dtype`` with ``threads`` threads: the best of ``repeats`` square
    products, the physical limit a model's achieved GFLOP/s is read against (bf16 autocast runs its
    matmuls in bf16, so a bf16 run is read against the bf16 rate)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)  # warm-up: first call allocates and picks the kernel
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size ** 3 / best / 1e9
