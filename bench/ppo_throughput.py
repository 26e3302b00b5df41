#!/usr/bin/env python
"""Throughput of our PPO (``rlhfpipe.training.ppo.train_ppo``) started from the TRL anchor's saved state.

``trl_ppo_anchor.py --save-artifacts DIR`` writes the tokenizer, the prompts, the initial policy /
reward / value weights and its PPOConfig. This script builds our trainer from exactly those files and
settings, times ``train_ppo()`` alone (as the anchor times ``trainer.train()`` alone) and prints one
JSON line shaped like the anchor's (size, variant="ours", episodes/s, generated tokens/s, peak RSS,
phase times and shares, fingerprints of the starting state, settings, versions), plus the model FLOPs
of the run (``bench.flops``, counted from the shapes each phase saw), the GFLOP/s they make, and the
machine's fp32 matmul GFLOP/s measured in the same process right after: the physical limit.

    .venv/bin/python -m bench.ppo_throughput bench/out/artifacts/tiny --size tiny [--results-file F]

Scoring goes through the normal path: ``RewardRegistry`` with one ``reward_model`` term backed by
``RewardModel`` on a directory holding the anchor's raw seq-cls reward model and its tokenizer, so the
reward is the random-init model's raw score (no normalisation statistics; normalize off). Nothing is
written into data/ or models/; the reward directory and the (never used) checkpoint folder are temporary.
"""

from __future__ import annotations

import argparse
import copy
import gc
import dataclasses
import hashlib
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

# Pinned before torch is imported, like the anchor; the runtime thread count is applied below as well.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]

import psutil
import torch
import transformers
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from bench.flops import DecoderShape, forward_flops, matmul_gflops, sampling_flops
from rlhfpipe.cli import setup_runtime
from rlhfpipe.config import PPOConfig, RewardTerm, load_section
from rlhfpipe.models.generation import encode_prompts
from rlhfpipe.models.loading import disable_dropout, load_causal_lm, load_sequence_classifier, load_tokenizer
from rlhfpipe.rewards.registry import RewardRegistry
import rlhfpipe.rewards.reward_model as reward_model_module
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training.common import NullLive
import rlhfpipe.training.ppo as ppo_module
from rlhfpipe.training.ppo import PPOModels, run_config, train_ppo

transformers.logging.set_verbosity_error()

# The anchor's model sizes (trl_ppo_anchor.SIZES), repeated so the JSON line has the same shape.
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
}
PHASES = ["generation", "ref_forward", "value_reward_forward", "reward_text", "train_forward", "backward",
          "grad_clip", "optimizer_step", "gc"]
SHARES = {"generation": ["generation"], "forward": ["ref_forward", "value_reward_forward", "train_forward"],
          "backward": ["backward"], "optimizer": ["grad_clip", "optimizer_step"]}
"""the coarse shares of a run we report; "other" is the rest (reward text, gc, Python between phases)"""


def ppo_config_from_anchor(anchor: dict, episodes: int | None) -> PPOConfig:
    """Our PPOConfig with the anchor's settings; the fields TRL has no counterpart for say why they are set.

    Our PPO always stops at EOS, i.e. the anchor's default ``--stop-token eos``; the saved config cannot
    confirm it, since transformers masks every ``*_token`` field when it writes the JSON.
    """
    # the fields set here are all that differ from params.yaml's ppo section
    cfg = dataclasses.replace(
        load_section("ppo"),
        total_episodes=episodes or anchor["total_episodes"],
        batch_size=anchor["per_device_train_batch_size"],
        mini_batches=anchor["num_mini_batches"],
        grad_accum=anchor["gradient_accumulation_steps"],
        ppo_epochs=anchor["num_ppo_epochs"],
        learning_rate=anchor["learning_rate"],
        lr_schedule=anchor["lr_scheduler_type"],
        warmup_ratio=0.0,
        cliprange=anchor["cliprange"],
        cliprange_value=anchor["cliprange_value"],
        vf_coef=anchor["vf_coef"],
        gamma=anchor["gamma"],
        lam=anchor["lam"],
        kl_coef=anchor["kl_coef"],
        kl_estimator=anchor["kl_estimator"],
        whiten_rewards=anchor["whiten_rewards"],
        normalize_rewards=False,  # the anchor's reward model has no statistics: raw score, as TRL uses it
        reward_clip=0.0,  # TRL does not clip the score
        missing_eos_penalty=anchor["missing_eos_penalty"],
        temperature=anchor["temperature"],
        max_new_tokens=anchor["response_length"],
        value_model="separate",
        rewards=[RewardTerm("reward_model", 1.0)],
        save_every=1.0,  # no checkpoint inside the run (the anchor saves none either)
        log_samples=0,
        seed=anchor["seed"],
    )
    cfg.validate()
    return cfg


def prompts_from_anchor(path: Path, tokenizer) -> tuple[list[list[dict]], list[list[int]]]:
    """The anchor's prompts as chat messages (and its token ids); re-encoding must give exactly those ids."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    head, tail = f"{tokenizer.bos_token}<|user|>\n", f"{tokenizer.eos_token}\n<|assistant|>\n"
    prompts = []
    for row in rows:
        text = row["text"]
        if not (text.startswith(head) and text.endswith(tail)):
            raise SystemExit(f"{path}: prompt not in the anchor's chat format: {text!r}")
        prompts.append([{"role": "user", "content": text[len(head):-len(tail)]}])
    for start in range(0, len(prompts), 64):
        ids, mask = encode_prompts(tokenizer, prompts[start:start + 64])
        for row, x, m in zip(rows[start:start + 64], ids, mask):
            if x[m.bool()].tolist() != row["input_ids"]:
                raise SystemExit(f"{path}: our chat template does not reproduce the anchor's input_ids")
    return prompts, [row["input_ids"] for row in rows]


def sha256_tensors(model) -> str:
    """trl_ppo_anchor.sha256_tensors: equal hashes mean both implementations start from the same weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class PhaseStats:
    """perf_counter around calls train_ppo already makes (module globals looked up at call time)."""

    def __init__(self, eos_id: int):
        self.eos_id = eos_id
        self.seconds: dict[str, float] = {}
        self.flops: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.generated_positions = 0  # batch x positions generated until every row stopped (the anchor's count)
        self.tokens_until_eos = 0
        self.sequences = 0
        self.sequences_with_eos = 0
        self._starts: dict[str, float] = {}

    def add(self, phase: str, dt: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + dt
        self.calls[phase] = self.calls.get(phase, 0) + 1

    def add_flops(self, phase: str, flops: int) -> None:
        self.flops[phase] = self.flops.get(phase, 0) + flops

    def timed(self, phase, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.add(phase() if callable(phase) else phase, time.perf_counter() - t0)
        return wrapper

    def start(self, phase: str) -> None:
        self._starts[phase] = time.perf_counter()

    def stop(self, phase: str) -> None:
        t0 = self._starts.pop(phase, None)
        if t0 is not None:
            self.add(phase, time.perf_counter() - t0)

    def count_generation(self, responses: torch.Tensor) -> int:
        """Tally one sampled batch; returns the positions sampling stepped through."""
        b, length = responses.shape
        is_eos = responses == self.eos_id
        has = is_eos.any(dim=1)
        until_eos = torch.where(has, is_eos.float().argmax(dim=1) + 1, torch.full((b,), length))
        steps = int(until_eos.max())
        self.generated_positions += b * steps
        self.tokens_until_eos += int(until_eos.sum())
        self.sequences += b
        self.sequences_with_eos += int(has.sum())
        return steps


def install_probes(stats: PhaseStats, shapes: dict[str, DecoderShape]):
    """Wrap the trainer's phases, timing them and counting their FLOPs with ``shapes`` (policy, value,
    reward); returns a function that undoes every wrap."""
    undo = []

    def patch(owner, name, wrapper):
        original = getattr(owner, name)
        setattr(owner, name, wrapper(original))
        undo.append(lambda: setattr(owner, name, original))

    def sample_wrapper(original):
        def sample(*a, **k):
            t0 = time.perf_counter()
            gen = original(*a, **k)
            stats.add("generation", time.perf_counter() - t0)
            steps = stats.count_generation(gen.responses)
            batch, prompt_length = a[1].shape
            stats.add_flops("generation", sampling_flops(shapes["policy"], batch, prompt_length, steps))
            return gen
        return sample

    def counted(model: str, rollout: str, head_all: bool):
        """Count a full-sequence forward of ``model`` on args[1] (input_ids): in the training phase when
        gradients are on (its backward then costs twice as much), else in ``rollout``."""
        def wrapper(original):
            def call(*a, **k):
                phase = "train_forward" if torch.is_grad_enabled() else rollout
                batch, length = a[1].shape
                flops = forward_flops(shapes[model], batch, length, length, length if head_all else 1)
                stats.add_flops(phase, flops)
                if phase == "train_forward":
                    stats.add_flops("backward", 2 * flops)
                return stats.timed(phase, original)(*a, **k)
            return call
        return wrapper

    patch(ppo_module, "sample", sample_wrapper)
    patch(ppo_module, "forward_policy", counted("policy", "ref_forward", head_all=True))
    patch(ppo_module, "response_values", counted("value", "value_reward_forward", head_all=True))
    patch(ppo_module, "decode", lambda f: stats.timed("reward_text", f))
    patch(reward_model_module, "encode_conversations", lambda f: stats.timed("reward_text", f))
    patch(reward_model_module, "sequence_scores", counted("reward", "value_reward_forward", head_all=False))
    patch(torch.Tensor, "backward", lambda f: stats.timed("backward", f))
    patch(torch.nn.utils, "clip_grad_norm_", lambda f: stats.timed("grad_clip", f))
    hooks = [register_optimizer_step_pre_hook(lambda *a: stats.start("optimizer_step")),
             register_optimizer_step_post_hook(lambda *a: stats.stop("optimizer_step"))]

    def gc_callback(phase, info):
        (stats.start if phase == "start" else stats.stop)("gc")

    gc.callbacks.append(gc_callback)

    def restore():
        for fn in reversed(undo):
            fn()
        for h in hooks:
            h.remove()
        gc.callbacks.remove(gc_callback)
    return restore


def phase_breakdown(stats: PhaseStats, train_s: float) -> dict:
    out = {k: round(stats.seconds.get(k, 0.0), 3) for k in PHASES}
    out["other"] = round(train_s - sum(stats.seconds.get(k, 0.0) for k in PHASES), 3)
    return out


def phase_shares(stats: PhaseStats, train_s: float) -> dict:
    shares = {name: sum(stats.seconds.get(p, 0.0) for p in phases) / train_s for name, phases in SHARES.items()}
    shares["other"] = 1.0 - sum(shares.values())
    return {k: round(v, 3) for k, v in shares.items()}


def flop_rates(stats: PhaseStats, train_s: float, num_threads: int) -> dict:
    """Model GFLOP per phase, the rate over the whole run and over the training passes, and the
    machine's matmul rate: how far each is from the physical limit."""
    gflop = {k: round(v / 1e9, 2) for k, v in sorted(stats.flops.items())}
    total = sum(stats.flops.values())
    train_s_fb = stats.seconds.get("train_forward", 0.0) + stats.seconds.get("backward", 0.0)
    train_flops = stats.flops.get("train_forward", 0) + stats.flops.get("backward", 0)
    return dict(
        model_gflop={**gflop, "total": round(total / 1e9, 2)},
        achieved_gflops=round(total / train_s / 1e9, 1),
        achieved_gflops_train_passes=round(train_flops / max(1e-9, train_s_fb) / 1e9, 1),
        machine_matmul_gflops=round(matmul_gflops(num_threads), 1),
    )


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", type=Path, help="directory written by trl_ppo_anchor.py --save-artifacts")
    p.add_argument("--size", choices=sorted(SIZES), required=True, help="the --size the artifacts were made with")
    p.add_argument("--episodes", type=int, default=None, help="override total_episodes (smoke runs)")
    p.add_argument("--num-threads", type=int, default=None, help="default: params.yaml runtime.num_threads")
    p.add_argument("--results-file", default=None, help="also append the JSON result line to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_script0 = time.perf_counter()
    art = args.artifacts
    anchor = json.loads((art / "ppo_config.json").read_text())
    cfg = ppo_config_from_anchor(anchor, args.episodes)
    num_threads = args.num_threads or load_section("runtime", REPO / "params.yaml").num_threads
    setup_runtime(num_threads, cfg.seed)

    # ---------------- construction (not timed), as stages/ppo.py builds the models ----------------
    tokenizer = load_tokenizer(art / "tokenizer")
    prompts, prompt_ids = prompts_from_anchor(art / "prompts.jsonl", tokenizer)
    policy = load_causal_lm(str(art / "policy_init"), tokenizer)
    disable_dropout(policy)
    ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    value_model = load_sequence_classifier(str(art / "value_init"), tokenizer)
    disable_dropout(value_model)
    models = PPOModels(policy=policy, ref_policy=ref_policy, value_model=value_model)

    tmp = Path(tempfile.mkdtemp(prefix="rlhfpipe_ppo_bench_"))
    restore = None
    try:
        reward_dir = tmp / "reward"
        shutil.copytree(art / "reward_init", reward_dir)
        tokenizer.save_pretrained(reward_dir)
        reward_model = RewardModel(reward_dir)
        registry = RewardRegistry(reward_model, normalize_reward_model=False)
        fingerprints = dict(
            tokenizer=hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16],
            prompts_input_ids=hashlib.sha256(json.dumps(prompt_ids).encode()).hexdigest()[:16],
            policy_init=sha256_tensors(policy),
            reward_init=sha256_tensors(reward_model.model),
            value_init=sha256_tensors(value_model),
        )
        stats = PhaseStats(tokenizer.eos_token_id)
        shapes = {"policy": DecoderShape.of(policy), "value": DecoderShape.of(value_model),
                  "reward": DecoderShape.of(reward_model.model)}
        restore = install_probes(stats, shapes)
        rss_before = psutil.Process().memory_info().rss / 2**20
        construct_s = time.perf_counter() - t_script0

        # ---------------- training (timed) ----------------
        t0, cpu0 = time.perf_counter(), time.process_time()
        state = train_ppo(cfg, models, tokenizer, prompts, registry, NullLive(), tmp / "checkpoints")
        train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        # ---------------------------------------------------
    finally:
        if restore is not None:
            restore()
        shutil.rmtree(tmp, ignore_errors=True)

    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    episodes = state.update * cfg.batch_size
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    lens = [len(x) for x in prompt_ids]
    result = dict(
        harness="rlhfpipe_ppo_throughput",
        size=args.size,
        variant="ours",
        model=dict(
            **SIZES[args.size],
            vocab_size=len(tokenizer),
            policy_params=n_params(policy),
            value_params=n_params(value_model),
            reward_params=n_params(reward_model.model),
            attn_implementation=policy.config._attn_implementation,
            dtype=str(next(policy.parameters()).dtype),
        ),
        prompts=dict(n=len(prompts), len_min=min(lens), len_mean=round(sum(lens) / len(lens), 2), len_max=max(lens)),
        fingerprints=fingerprints,
        # a speed-up that keeps the numbers (same seed, same thread count) keeps these hashes
        final_fingerprints=dict(policy=sha256_tensors(policy), value=sha256_tensors(value_model)),
        episodes_requested=cfg.total_episodes,
        episodes=episodes,
        updates=state.update,
        train_wall_s=round(train_s, 3),
        # CPU seconds of all threads: on a loaded machine a steadier measure of the work than wall time
        train_cpu_s=round(train_cpu_s, 3),
        episodes_per_s=round(episodes / train_s, 3),
        generated_tokens=stats.generated_positions,
        generated_tokens_per_s=round(stats.generated_positions / train_s, 2),
        generated_tokens_until_eos=stats.tokens_until_eos,
        frac_sequences_with_eos=round(stats.sequences_with_eos / max(1, stats.sequences), 4),
        generation_only_tokens_per_s=round(
            stats.generated_positions / max(1e-9, stats.seconds.get("generation", 0.0)), 2),
        phase_s=phase_breakdown(stats, train_s),
        phase_share=phase_shares(stats, train_s),
        **flop_rates(stats, train_s, num_threads),
        phase_calls=dict(sorted(stats.calls.items())),
        construct_s=round(construct_s, 3),
        rss_before_train_mb=round(rss_before, 1),
        peak_rss_mb=round(peak_rss_mb, 1),
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        last_metrics=state.history[-1] if state.history else {},
        ppo_settings=dict(
            **run_config(cfg),
            optimizer="torch.optim.AdamW(eps=1e-5, weight_decay=0), over policy + value parameters",
            notes=[
                "same starting weights, prompts, tokenizer and PPO settings as the anchor (see fingerprints)",
                "differences that are ours by design: grad-norm clipping at max_grad_norm, AdamW eps 1e-5, "
                "reward scored on the chat-templated decoded text (registry path), prompt order from our seed",
            ],
        ),
        versions=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            transformers=transformers.__version__,
        ),
        platform=dict(machine=platform.machine(), cpu_count=os.cpu_count(), system=platform.system()),
    )
    line = json.dumps(result)
    if args.results_file:
        with open(args.results_file, "a") as f:
            f.write(line + "\n")
    print(line, flush=True)
    return result


if __name__ == "__main__":
    main()
