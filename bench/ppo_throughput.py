#!/usr/bin/env python
"""Throughput of our PPO (``rlhfpipe.training.ppo.train_ppo``) started from the TRL anchor's saved state.

``trl_ppo_anchor.py --save-artifacts DIR`` (with ``--size`` or ``--model-dir``) writes the tokenizer,
the prompts, the initial policy / reward / value weights and its PPOConfig. This script builds our
trainer from exactly those files and settings, times ``train_ppo()`` alone (as the anchor times
``trainer.train()`` alone) and prints one JSON line shaped like the anchor's (size, variant,
episodes/s, generated tokens/s, peak RSS, phase times and shares, fingerprints of the starting state,
settings, versions), plus the model FLOPs of the run (``bench.flops``, counted from the shapes each
phase saw; the output heads from the rows they were actually applied to), the GFLOP/s they make, and
the machine's fp32 and bf16 matmul GFLOP/s measured in the same process right after: the physical
limits. The training passes' rate is read against the peak of the precision they ran in.

    .venv/bin/python -m bench.ppo_throughput bench/out/artifacts/tiny --size tiny [--results-file F]
    .venv/bin/python -m bench.ppo_throughput bench/out/artifacts/base --model models/base --precision bf16

``--precision bf16`` runs our PPO under bf16 autocast with fp32 master weights. The switch is taken
from rlhfpipe itself: a ``precision`` argument of ``train_ppo`` if it has one, else a ``precision``
field of ``PPOConfig``; an rlhfpipe with neither runs fp32 only and refuses bf16 in one line.

Scoring goes through the normal path: ``RewardRegistry`` with one ``reward_model`` term backed by
``RewardModel`` on a directory holding the anchor's raw seq-cls reward model and its tokenizer, so the
reward is the random-init model's raw score (no normalisation statistics; normalize off). Nothing is
written into data/ or models/; the reward directory and the (never used) checkpoint folder are temporary.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import inspect
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

import rlhfpipe.rewards.reward_model as reward_model_module
import rlhfpipe.training.ppo as ppo_module
from rlhfpipe.cli import setup_runtime
from rlhfpipe.config import PPOConfig, RewardTerm, load_section
from bench.flops import DecoderShape, forward_flops, matmul_gflops, sampling_flops
from rlhfpipe.models.generation import encode_prompts
from rlhfpipe.models.loading import disable_dropout, load_causal_lm, load_sequence_classifier, load_tokenizer
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training.ppo import PPOModels, run_config, train_ppo
from rlhfpipe.training.common import NullLive

transformers.logging.set_verbosity_error()

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
PHASES = ["generation", "ref_forward", "value_reward_forward", "reward_text", "train_forward", "backward",
          "grad_clip", "optimizer_step", "gc"]
SHARES = {"generation": ["generation"], "ref_forward": ["ref_forward"],
          "value_reward_forward": ["value_reward_forward"], "train_forward": ["train_forward"],
          "backward": ["backward"], "optimizer": ["grad_clip", "optimizer_step"]}
"""the shares a run is reported in; "other" is the rest (reward text, gc, Python between phases)"""
MATMUL_SIZES = (1024, 2048)
"""square products the matmul peak is the best of: big enough for the kernels' full rate, a few seconds"""


def ppo_config_from_anchor(anchor: dict, episodes: int | None) -> PPOConfig:
    """Our PPOConfig with the anchor's settings; the fields TRL has no counterpart for say why they are set.

    Our PPO always stops at EOS, i.e. the anchor's default ``--stop-token eos``; the saved config cannot
    confirm it, since transformers masks every ``*_token`` field when it writes the JSON.
    """
    cfg = dataclasses.replace(load_section("ppo"), total_episodes=episodes or anchor["total_episodes"],
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
        length_floor=0.0,  # TRL has no length floor
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
    """The anchor's prompts as chat messages (and its token ids); re-encoding must give exactly those ids.

    The anchor wrote each prompt as the decoded text of one user message rendered by the tokenizer's chat
    template; rendering a marker message with the same template gives what comes before and after it."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    marker = "\x00user message\x00"
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False,
                                             add_generation_prompt=True)
    head, tail = rendered.split(marker)
    prompts = []
    for number, row in enumerate(rows, 1):
        text = row["text"]
        if not (text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail)):
            raise SystemExit(f"{path}:{number}: prompt not in the chat format of the saved tokenizer: {text[:80]!r}")
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
        self.phase: str | None = None  # the counted phase running now: where an output head's FLOPs go
        self.head_rows = 0  # rows the output heads saw inside the current counted call
        self.last_head_rows = 0  # ... and inside the counted call that ended last
        self.head_estimated = False  # a policy forward's head FLOPs had to be assumed (see install_probes)
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


def second_arg(a: tuple, k: dict, name: str) -> torch.Tensor:
    """The (batch, length) ids a probed function got, positionally after the models or by keyword."""
    return a[1] if len(a) > 1 else k[name]


def install_probes(stats: PhaseStats, shapes: dict[str, DecoderShape], heads: list[torch.nn.Module]):
    """Wrap the trainer's phases, timing them and counting their FLOPs with ``shapes`` (policy, value,
    reward); returns a function that undoes every wrap.

    The decoder blocks are counted from the shapes a phase saw; the output ``heads`` (LM heads, score
    heads) from the rows a forward hook sees them applied to, so logits computed on the response
    positions only are counted as such. A counted policy forward whose head was never seen (logits
    computed without calling the head module) is counted as logits on every position, and flagged."""
    undo = []
    blocks = {name: dataclasses.replace(shape, head_outputs=0) for name, shape in shapes.items()}

    def patch(owner, name, wrapper):
        if not hasattr(owner, name):
            raise SystemExit(f"error: {owner.__name__}.{name} is gone: the probes of bench/ppo_throughput.py "
                             f"need updating to the trainer's new phases")
        original = getattr(owner, name)
        setattr(owner, name, wrapper(original))
        undo.append(lambda: setattr(owner, name, original))

    def head_hook(module, inputs, output):
        if stats.phase is None:
            return
        x = inputs[0]
        rows = x.numel() // x.shape[-1]
        stats.head_rows += rows
        flops = 2 * rows * module.in_features * module.out_features
        stats.add_flops(stats.phase, flops)
        if stats.phase == "train_forward":
            stats.add_flops("backward", 2 * flops)

    handles = [head.register_forward_hook(head_hook) for head in heads]

    def in_phase(phase: str, fn, *a, **k):
        outer = stats.phase, stats.head_rows
        stats.phase, stats.head_rows = phase, 0
        try:
            return stats.timed(phase, fn)(*a, **k)
        finally:
            seen = stats.head_rows
            stats.phase, stats.head_rows = outer[0], outer[1] + seen
            stats.last_head_rows = seen

    def sample_wrapper(original):
        def sample(*a, **k):
            gen = in_phase("generation", original, *a, **k)
            steps = stats.count_generation(gen.responses)
            batch, prompt_length = second_arg(a, k, "input_ids").shape
            stats.add_flops("generation", sampling_flops(blocks["policy"], batch, prompt_length, steps))
            return gen
        return sample

    def counted(model: str, rollout: str):
        """Count a full-sequence forward of ``model`` on its input_ids: in the training phase when
        gradients are on (its backward then costs twice as much), else in ``rollout``."""
        def wrapper(original):
            def call(*a, **k):
                phase = "train_forward" if torch.is_grad_enabled() else rollout
                batch, length = second_arg(a, k, "input_ids").shape
                flops = forward_flops(blocks[model], batch, length, length, 0)
                result = in_phase(phase, original, *a, **k)
                if model == "policy" and stats.last_head_rows == 0:
                    flops += forward_flops(shapes[model], batch, 0, 0, length)
                    stats.head_estimated = True
                stats.add_flops(phase, flops)
                if phase == "train_forward":
                    stats.add_flops("backward", 2 * flops)
                return result
            return call
        return wrapper

    patch(ppo_module, "sample", sample_wrapper)
    patch(ppo_module, "forward_policy", counted("policy", "ref_forward"))
    patch(ppo_module, "response_values", counted("value", "value_reward_forward"))
    patch(ppo_module, "decode", lambda f: stats.timed("reward_text", f))
    patch(reward_model_module, "encode_conversations", lambda f: stats.timed("reward_text", f))
    patch(reward_model_module, "sequence_scores", counted("reward", "value_reward_forward"))
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
        for h in hooks + handles:
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


def machine_peak(num_threads: int, dtype: torch.dtype) -> float:
    return max(matmul_gflops(num_threads, size=n, dtype=dtype) for n in MATMUL_SIZES)


def flop_rates(stats: PhaseStats, train_s: float, episodes: int, num_threads: int, precision: str) -> dict:
    """Model GFLOP per phase, the rate over the whole run and over the training passes, the machine's
    matmul rates, and what the training passes at the peak of their precision would allow: how far
    each is from the physical limit."""
    gflop = {k: round(v / 1e9, 2) for k, v in sorted(stats.flops.items())}
    total = sum(stats.flops.values())
    train_s_fb = stats.seconds.get("train_forward", 0.0) + stats.seconds.get("backward", 0.0)
    train_flops = stats.flops.get("train_forward", 0) + stats.flops.get("backward", 0)
    peaks = {name: machine_peak(num_threads, dtype) for name, dtype in PRECISIONS.items()}
    peak = peaks[precision]
    achieved = train_flops / max(1e-9, train_s_fb) / 1e9
    at_peak_s = train_flops / 1e9 / peak
    return dict(
        model_gflop={**gflop, "total": round(total / 1e9, 2)},
        head_flops_assumed_all_positions=stats.head_estimated,
        achieved_gflops=round(total / train_s / 1e9, 1),
        achieved_gflops_train_passes=round(achieved, 1),
        machine_matmul_gflops=round(peaks["fp32"], 1),
        machine_matmul_gflops_bf16=round(peaks["bf16"], 1),
        train_passes_peak_gflops=round(peak, 1),
        train_passes_share_of_peak=round(achieved / peak, 3),
        # episodes/s with the training passes at the peak: alone, and with every other phase as measured
        ceiling_train_passes_only=round(episodes / at_peak_s, 3),
        ceiling_episodes_per_s=round(episodes / (at_peak_s + train_s - train_s_fb), 3),
    )


def precision_switch(cfg: PPOConfig, precision: str) -> tuple[PPOConfig, dict, str]:
    """How this rlhfpipe's PPO is told its precision: the config to run, the extra train_ppo arguments and
    a note of which switch it was."""
    if "precision" in inspect.signature(train_ppo).parameters:
        return cfg, {"precision": precision}, "train_ppo(precision=)"
    if getattr(cfg, "precision", None) is not None:
        cfg = dataclasses.replace(cfg, precision=precision)
        cfg.validate()
        return cfg, {}, "PPOConfig.precision"
    if precision == "fp32":
        return cfg, {}, "none (this rlhfpipe's PPO runs fp32 only)"
    raise SystemExit("error: --precision bf16: this rlhfpipe's PPO has no precision switch "
                     "(neither a train_ppo precision argument nor a PPOConfig.precision field)")


def model_summary(model) -> dict:
    """The architecture fields the anchor reports for its sizes, read from the model's config."""
    config = model.config
    return dict(hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads,
                num_key_value_heads=getattr(config, "num_key_value_heads", config.num_attention_heads),
                intermediate_size=config.intermediate_size,
                tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)))


def check_model_dir(model_dir: Path, artifacts: Path) -> None:
    """The artifacts must come from ``model_dir`` (an anchor run with --model-dir on it), not a stale run."""
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"error: --model {model_dir}: no config.json there: not a saved model directory")
    want = json.loads((model_dir / "config.json").read_text())
    have = json.loads((artifacts / "policy_init" / "config.json").read_text())
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if want.get(key) != have.get(key):
            raise SystemExit(f"error: {artifacts / 'policy_init' / 'config.json'}: {key}={have.get(key)!r}, but "
                             f"{model_dir / 'config.json'} says {want.get(key)!r}: artifacts from another model")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", type=Path, help="directory written by trl_ppo_anchor.py --save-artifacts")
    p.add_argument("--size", default=None,
                   help="label of the run, the anchor's: its --size (tiny, small) or its --model-dir's base name")
    p.add_argument("--model", type=Path, default=None,
                   help="the model directory the anchor's --model-dir named: checked against the artifacts, and "
                   "the label when --size is not given")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None,
                   help="fp32, or bf16 autocast with fp32 masters (default: the anchor's saved bf16 setting)")
    p.add_argument("--episodes", type=int, default=None, help="override total_episodes (smoke runs)")
    p.add_argument("--check-precision", action="store_true",
                   help="only check that this rlhfpipe's PPO can run --precision, print how, and exit")
    p.add_argument("--num-threads", type=int, default=None, help="default: params.yaml runtime.num_threads")
    p.add_argument("--results-file", default=None, help="also append the JSON result line to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.check_precision:
        switch = precision_switch(load_section("ppo"), args.precision or "fp32")[2]
        print(json.dumps(dict(precision=args.precision or "fp32", precision_switch=switch)))
        return {}
    t_script0 = time.perf_counter()
    art = args.artifacts
    for need in ("ppo_config.json", "prompts.jsonl", "tokenizer", "policy_init", "reward_init", "value_init"):
        if not (art / need).exists():
            raise SystemExit(f"error: {art / need} is missing: not a directory written by --save-artifacts")
    if args.model is not None:
        check_model_dir(args.model, art)
    label = args.size or (args.model.resolve().name if args.model else None)
    if label is None:
        raise SystemExit("error: name the run with --size or --model")
    anchor = json.loads((art / "ppo_config.json").read_text())
    precision = args.precision or ("bf16" if anchor.get("bf16") else "fp32")
    cfg, train_kwargs, switch = precision_switch(ppo_config_from_anchor(anchor, args.episodes), precision)
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
        heads = [policy.get_output_embeddings(), ref_policy.get_output_embeddings(), value_model.score,
                 reward_model.model.score]
        restore = install_probes(stats, shapes, heads)
        rss_before = psutil.Process().memory_info().rss / 2**20
        construct_s = time.perf_counter() - t_script0

        # ---------------- training (timed) ----------------
        t0, cpu0 = time.perf_counter(), time.process_time()
        state = train_ppo(cfg, models, tokenizer, prompts, registry, NullLive(), tmp / "checkpoints", **train_kwargs)
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
        size=label,
        variant="ours" if precision == "fp32" else f"ours_{precision}",
        precision=precision,
        precision_switch=switch,
        model=dict(
            **model_summary(policy),
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
        **flop_rates(stats, train_s, episodes, num_threads, precision),
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
