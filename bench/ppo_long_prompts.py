#!/usr/bin/env python
"""Peak memory of our PPO on long prompts: one or more updates of the ppo stage's own code path, with every
prompt exactly ``--prompt-tokens`` tokens long (chat template included), as the prepared data rarely are.

    .venv/bin/python -m bench.ppo_long_prompts [--prompt-tokens 256] [--updates 1] [--out F]

It reads ``params.yaml`` (sections runtime and ppo; ``ppo.max_prompt_length`` is raised to the prompt length if
it is lower) and the stage's inputs as ``dvc repro`` left them (``data/prepared``, ``models/sft``,
``models/reward``). The prompts are the training prompts' own user turns, joined and cut at a word boundary
until the templated prompt reaches the length. Nothing is written but ``--out``; the checkpoint folder is
temporary. Peak RSS is the process's high-water mark (getrusage), loading included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from rlhfpipe.cli import setup_runtime
from rlhfpipe.config import load_section
from rlhfpipe.devices import stage_device, stage_precision
from rlhfpipe.io import read_jsonl
from rlhfpipe.models.loading import load_tokenizer
from rlhfpipe.models.prompt_length import prompt_length
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training.common import NullLive
from rlhfpipe.training.ppo import build_models, train_ppo


def long_prompts(tokenizer, rows: list[dict], n: int, length: int) -> list[list[dict]]:
    """``n`` single-turn prompts of exactly ``length`` tokens, from the training prompts' user turns."""
    words = " ".join(m["content"] for r in rows for m in r["prompt"] if m["role"] == "user").split()
    prompts = []
    for i in range(n):
        pool = words[(i * 97) % len(words):] + words  # a different start for each prompt
        lo, hi = 1, len(pool)
        while lo < hi:  # most words whose templated prompt fits
            mid = (lo + hi + 1) // 2
            if prompt_length(tokenizer, [{"role": "user", "content": " ".join(pool[:mid])}]) <= length:
                lo = mid
            else:
                hi = mid - 1
        text = " ".join(pool[:lo])
        # the next word would overshoot by several tokens: top up with periods
        while prompt_length(tokenizer, [{"role": "user", "content": text}]) < length:
            text += "."
        prompts.append([{"role": "user", "content": text}])
    return prompts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--updates", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    runtime, cfg = load_section("runtime"), load_section("ppo")
    cfg = dataclasses.replace(cfg, total_episodes=cfg.batch_size * args.updates,
                              max_prompt_length=max(cfg.max_prompt_length, args.prompt_tokens))
    setup_runtime(runtime.num_threads, cfg.seed)
    device = stage_device(launched=True)
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer("models/sft")
    prompts = long_prompts(tokenizer, read_jsonl(Path("data/prepared/prompts_train.jsonl")), cfg.batch_size,
                           args.prompt_tokens)
    lengths = sorted(prompt_length(tokenizer, p) for p in prompts)
    models = build_models(cfg, "models/sft", "models/reward", tokenizer, device)
    registry = RewardRegistry(RewardModel("models/reward", device), normalize_reward_model=cfg.normalize_rewards,
                              cohesion_weights=load_section("cohesion"), references={},
                              length_floor_fraction=cfg.length_floor)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as ckpt:
        state = train_ppo(cfg, models, tokenizer, prompts, registry, NullLive(), Path(ckpt),
                          precision=precision)
    result = {
        "prompt_tokens": [lengths[0], lengths[-1]], "batch_size": cfg.batch_size,
        "max_new_tokens": cfg.max_new_tokens, "updates": state.update, "precision": precision,
        "lora": cfg.lora.enabled, "value_model": cfg.value_model,
        "seconds": round(time.monotonic() - start, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2),
    }
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
