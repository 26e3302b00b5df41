"""A few bf16 updates of SFT, reward, PPO and GRPO at real model shapes, with throughput and peak memory.

Shapes: SmolLM2-135M and a Llama 3.2 1B, random init from configs written here (no hub, no weights). The
tokenizer is the pipeline's from-scratch BPE; ids it does not know (the model's larger vocabulary) decode
to nothing, which changes no cost. Run by bench/gpu_smoke.sh; ``--cpu --tiny`` runs the same code on a CPU
with a small shape, so the script is exercised where no GPU is.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rlhfpipe.config import RewardTerm, load_section
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.models.loading import save_model, train_tokenizer
from rlhfpipe.training.common import NullLive

# the trainers run from a scratch folder (their checkpoints land there), so params.yaml is named by its place
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M config.json
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    # meta-llama/Llama-3.2-1B config.json (without its rope scaling, which changes no cost)
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=2048,
                     rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    # --tiny: a 50k vocabulary, as the memory fixes are about, on a small body
    "tiny": dict(vocab_size=50000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                 rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}




def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB on Linux)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def timed(device, fn):
    reset_peak(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - start, peak_memory_gib(device)


def run_shape(name: str, device: torch.device, work: Path, sizes: dict) -> list[dict]:
    from rlhfpipe.rewards.registry import RewardRegistry
    from rlhfpipe.rewards.reward_model import STATS_FILE, RewardModel
    from rlhfpipe.training.grpo import train_grpo
    from rlhfpipe.training.ppo import build_models, train_ppo
    from rlhfpipe.training.reward_model import train_reward
    from rlhfpipe.training.sft import train_sft

    rows = generate_corpus(60, 0)
    tokenizer = train_tokenizer([u for r in rows for u in r["Utterance"] + r["utt_user_most_recent"]], 1000)
    prompts = [[{"role": "user", "content": r["utt_user_most_recent"][-1]}] for r in rows]
    answers = [r["Utterance"][-1] for r in rows]
    sft_rows = [{"prompt": p, "completion": [{"role": "assistant", "content": a}]} for p, a in zip(prompts, answers)]
    pairs = [{"prompt": p, "chosen": [{"role": "assistant", "content": a}],
              "rejected": [{"role": "assistant", "content": answers[(i + 7) % len(answers)]}], "source": "smoke"}
             for i, (p, a) in enumerate(zip(prompts, answers))]
    shape = SHAPES[name]
    config = LlamaConfig(**shape, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, attention_dropout=0.0)
    torch.manual_seed(0)
    init_dir = work / f"{name}-init"
    save_model(LlamaForCausalLM(config), tokenizer, init_dir)
    os.chdir(work)  # the trainers' checkpoints/ go here
    out, b, steps = [], sizes["batch"], sizes["steps"]

    def row(phase, items, seconds, peak):
        out.append({"shape": name, "phase": phase, "items/s": items / seconds, "peak_gib": peak, "seconds": seconds})

    model_cfg = dataclasses.replace(load_section("model", PARAMS), name_or_path=str(init_dir))
    sft_cfg = dataclasses.replace(load_section("sft", PARAMS), epochs=steps * b / len(sft_rows), batch_size=b, learning_rate=1e-4, max_length=256,
                        save_every=1.0)
    (model, _), s, peak = timed(device, lambda: train_sft(sft_cfg, model_cfg, tokenizer, sft_rows, sft_rows[:b],
                                                          NullLive(), f"{name}-sft", precision="bf16"))
    row("sft", steps * b, s, peak)
    sft_dir = work / f"{name}-sft"
    save_model(model, tokenizer, sft_dir)
    del model

    reward_cfg = dataclasses.replace(load_section("reward", PARAMS), epochs=steps * b / len(pairs), batch_size=b, max_length=256)
    (model, _), s, peak = timed(device, lambda: train_reward(reward_cfg, str(sft_dir), tokenizer, pairs, pairs[:b],
                                                             NullLive(), f"{name}-reward", precision="bf16"))
    row("reward", steps * b, s, peak)
    reward_dir = work / f"{name}-reward"
    save_model(model, tokenizer, reward_dir)
    (reward_dir / STATS_FILE).write_text('{"mean": 0.0, "std": 1.0}')
    del model

    registry = RewardRegistry(RewardModel(reward_dir, device))
    ppo_defaults = load_section("ppo", PARAMS)
    # the default's gradient accumulation where it divides the smoke's micro-batch of b // 2
    ppo_cfg = dataclasses.replace(ppo_defaults, total_episodes=steps * b, batch_size=b, mini_batches=2, ppo_epochs=1,
                                  grad_accum=math.gcd(ppo_defaults.grad_accum, b // 2), max_new_tokens=48,
                                  learning_rate=1e-5, rewards=[RewardTerm("reward_model", 1.0)], save_every=1.0)
    ppo_cfg.validate()
    models = build_models(ppo_cfg, str(sft_dir), str(reward_dir), tokenizer, device)
    _, s, peak = timed(device, lambda: train_ppo(ppo_cfg, models, tokenizer, prompts, registry, NullLive(),
                                                 work / f"{name}-ppo-ckpt", precision="bf16"))
    row("ppo", steps * b, s, peak)
    del models

    grpo_cfg = dataclasses.replace(load_section("grpo", PARAMS), steps=steps, prompts_per_step=b // 2, num_generations=2, max_completion_length=48,
                          rewards=[RewardTerm("reward_model", 1.0)], save_every=1.0)
    _, s, peak = timed(device, lambda: train_grpo(grpo_cfg, str(sft_dir), tokenizer, prompts, registry, NullLive(),
                                                  f"{name}-grpo", precision="bf16"))
    row("grpo", steps * b, s, peak)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (checks the script, measures nothing)")
    parser.add_argument("--tiny", action="store_true", help="a tiny shape instead of SmolLM2-135M and Llama 1B")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per phase")
    parser.add_argument("--batch", type=int, default=16, help="examples, pairs or prompts per step")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("gpu_smoke: no CUDA device; use --cpu --tiny to check the script on a CPU")
    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    names = ["tiny"] if args.tiny else ["smollm2-135m", "llama-1b"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += run_shape(name, device, Path(tmp), {"batch": args.batch, "steps": args.steps})
    what = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    memory = "peak GPU memory (GiB)" if device.type == "cuda" else "process peak RSS (GiB, cumulative)"
    print(f"\n{what}, bf16 autocast, {args.steps} steps of {args.batch} per phase (items: examples, pairs, "
          f"episodes, completions)\n")
    print(f"| shape | phase | items/s | {memory} | seconds |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shape']} | {r['phase']} | {r['items/s']:.2f} | {r['peak_gib']:.2f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
