#!/usr/bin/env python
"""Our PPO against the TRL anchor, back to back, on the toy sizes and on a real model, in fp32 and bf16.

Per group (a toy size or the model, in one precision), each round runs anchor stock, anchor --gc-freeze
and ours one after the other, rotating the order every round so that drift in machine load hits every
variant. The first anchor run of a size or model also saves its artifacts (tokenizer, prompts, initial
weights, settings), from which ``ppo_throughput.py`` starts ours: both sides train the same weights on
the same prompts with the same settings (full fine-tuning, batch, response length, PPO epochs,
mini-batches). Every JSON line is appended to the results file, then one summary line; the summary
table is printed at the end. Exit status 1 when a target is missed.

Targets on the real model, per precision: ours >= 1.5x the anchor's stock and --gc-freeze episodes/s,
our peak RSS <= 60% of the anchor's, our training passes >= 50% of the machine's matmul peak of their
precision (measured in the same run). On the toy sizes (fp32): ours >= 2x stock and >= 1.25x gc-freeze.
Where a target is missed the summary shows why: each side's phase shares, the peak, and the ceiling
(the episodes/s ours would reach with its training passes at the peak).

    .venv/bin/python -m bench.compare_ppo                              # tiny x3 rounds, small x2 rounds
    .venv/bin/python -m bench.compare_ppo --model models/base          # real model, fp32 and bf16, 2 rounds
    .venv/bin/python -m bench.compare_ppo --model models/base --sizes tiny small   # both in one run
    .venv/bin/python -m bench.compare_ppo --sizes tiny --rounds 1 --episodes 16    # smoke run
    .venv/bin/python -m bench.compare_ppo --summarize bench/results/2025-11-22.jsonl

On the model the defaults are 32 episodes, batch 16, 32 new tokens, 2 PPO epochs, 1 mini-batch (a
round of three runs takes a few minutes); the toy sizes keep the anchor's defaults (256 episodes,
4 PPO epochs). ``--episodes``, ``--batch-size``, ``--response-length``, ``--ppo-epochs`` and
``--mini-batches`` override both. ``--precision`` defaults to fp32,bf16 on the model and fp32 on the
toy sizes; given, it applies to all.

The anchor runs in its own venv (TRL 0.29.1 cannot share ours), built on first use at bench/.venv-anchor
by the anchor's run_trl_ppo_anchor.sh (pass --anchor-venv to use one built elsewhere). Both sides run
with OMP_NUM_THREADS and torch threads set to params.yaml ``runtime.num_threads`` (2), or to
``--threads``: on a machine shared with other jobs, two-thread runs mostly measure OpenMP threads
spinning against the other load, and one thread each is the steadier comparison.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from rlhfpipe.config import load_section

VARIANTS = ["stock", "gc_freeze", "ours"]
TOY_SIZES = ["tiny", "small"]
DEFAULT_ROUNDS = {"tiny": 3, "small": 2}
MODEL_ROUNDS = 2
MODEL_SETTINGS = dict(episodes=32, batch_size=16, response_length=32, ppo_epochs=2, mini_batches=1)
"""the real model's defaults: one round of three runs in a few minutes on 2 cores"""
ANCHOR_FLAGS = dict(episodes="--episodes", batch_size="--batch-size", response_length="--response-length",
                    ppo_epochs="--num-ppo-epochs", mini_batches="--mini-batches")
PHASES = ["generation", "ref_forward", "value_reward_forward", "train_forward", "backward", "optimizer"]


@dataclass(frozen=True)
class Targets:
    vs_stock: float
    vs_gc_freeze: float
    rss_share: float | None
    """our peak RSS over the anchor's, at most; None: no target"""
    peak_share: float | None
    """our training passes' GFLOP/s over the matmul peak of their precision, at least; None: no target"""


TOY_TARGETS = Targets(vs_stock=2.0, vs_gc_freeze=1.25, rss_share=None, peak_share=None)
MODEL_TARGETS = Targets(vs_stock=1.5, vs_gc_freeze=1.5, rss_share=0.6, peak_share=0.5)


@dataclass(frozen=True)
class Group:
    name: str
    """the size (tiny, small) or the model directory's base name, as the anchor labels its result"""
    precision: str
    rounds: int
    anchor_args: list[str]
    ours_args: list[str]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_json(cmd: list[str], env: dict) -> dict:
    """Run one benchmark process; its last stdout line is the JSON result."""
    proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"error: {' '.join(cmd[:3])}... exited with {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def settings_args(args, model: bool) -> list[str]:
    """The anchor flags of the run settings: the model's defaults, overridden by what was given."""
    out = []
    for key, flag in ANCHOR_FLAGS.items():
        value = getattr(args, key)
        if value is None and model:
            value = MODEL_SETTINGS[key]
        if value is not None:
            out += [flag, str(value)]
    return out


def plan(args) -> list[Group]:
    """The groups to measure, toy sizes first, each precision of each."""
    groups = []
    for size in args.sizes:
        for precision in args.precision or ["fp32"]:
            groups.append(Group(size, precision, args.rounds or DEFAULT_ROUNDS[size],
                                ["--size", size, *settings_args(args, model=False)], ["--size", size]))
    if args.model is not None:
        # the anchor labels a --model-dir run with the directory's base name; ours is told the same label
        name = os.path.basename(os.path.normpath(str(args.model)))
        for precision in args.precision or ["fp32", "bf16"]:
            groups.append(Group(name, precision, args.rounds or MODEL_ROUNDS,
                                ["--model-dir", str(args.model), *settings_args(args, model=True)],
                                ["--size", name, "--model", str(args.model)]))
    return groups


def anchor_cmd(args, group: Group, variant: str, artifacts: Path | None) -> list[str]:
    cmd = ["bash", str(args.anchor_dir / "run_trl_ppo_anchor.sh"), str(args.anchor_venv), *group.anchor_args]
    if variant == "gc_freeze":
        cmd.append("--gc-freeze")
    if group.precision == "bf16":
        cmd.append("--bf16")
    if artifacts is not None:
        cmd += ["--save-artifacts", str(artifacts)]
    return cmd


def ours_cmd(args, group: Group, artifacts: Path) -> list[str]:
    # every setting comes from the artifacts' ppo_config.json, written by the anchor with the same flags
    return [sys.executable, "-m", "bench.ppo_throughput", str(artifacts), *group.ours_args,
            "--precision", group.precision, "--num-threads", str(args.num_threads)]


# ------------------------------------------------------------------ summary
def variant_and_precision(row: dict) -> tuple[str, str]:
    """The anchor marks bf16 runs with a variant suffix (stock_bf16); ours also says it in ``precision``."""
    variant = row["variant"]
    if variant.endswith("_bf16"):
        return variant[: -len("_bf16")], "bf16"
    return variant, row.get("precision", "fp32")


def group_key(row: dict) -> tuple:
    size = row["size"]
    order = TOY_SIZES.index(size) if size in TOY_SIZES else len(TOY_SIZES)
    return order, size, variant_and_precision(row)[1], row["torch_threads"], row["episodes"]


def phase_shares(row: dict) -> dict[str, float]:
    """Each phase's share of the run, from the seconds both harnesses report (optimizer = clipping + step)."""
    seconds = dict(row["phase_s"])
    seconds["optimizer"] = seconds.get("optimizer_step", 0.0) + seconds.get("grad_clip", 0.0)
    shares = {p: seconds.get(p, 0.0) / row["train_wall_s"] for p in PHASES}
    shares["other"] = 1.0 - sum(shares.values())
    return shares


def share_of_peak(row: dict) -> float:
    if "train_passes_share_of_peak" in row:
        return row["train_passes_share_of_peak"]
    return row["achieved_gflops_train_passes"] / row["machine_matmul_gflops"]  # results from before bf16 peaks


def summarize_group(key: tuple, rows: list[dict]) -> dict:
    """Medians per variant, the ratios and the targets of one group, as one summary record."""
    _, size, precision, threads, episodes = key
    targets = TOY_TARGETS if size in TOY_SIZES else MODEL_TARGETS
    by_variant = {v: [r for r in rows if variant_and_precision(r)[0] == v] for v in VARIANTS}
    out = dict(size=size, precision=precision, threads=threads, episodes=episodes,
               runs={v: len(x) for v, x in by_variant.items()})
    if not all(by_variant.values()):
        return {**out, "complete": False, "met": False}
    med = lambda v, f: statistics.median(f(r) for r in by_variant[v])  # noqa: E731
    eps = {v: med(v, lambda r: r["episodes_per_s"]) for v in VARIANTS}
    rss = {v: med(v, lambda r: r["peak_rss_mb"]) for v in VARIANTS}
    anchor_rss = statistics.median(r["peak_rss_mb"] for v in ("stock", "gc_freeze") for r in by_variant[v])
    out.update(complete=True, episodes_per_s={v: round(x, 3) for v, x in eps.items()},
               peak_rss_mb={v: round(x, 1) for v, x in rss.items()},
               ours_vs_stock=round(eps["ours"] / eps["stock"], 3),
               ours_vs_gc_freeze=round(eps["ours"] / eps["gc_freeze"], 3),
               rss_vs_anchor=round(rss["ours"] / anchor_rss, 3),
               phase_share={v: {p: round(statistics.median(phase_shares(r)[p] for r in by_variant[v]), 3)
                                for p in [*PHASES, "other"]} for v in VARIANTS})
    ours = by_variant["ours"]
    if all("achieved_gflops_train_passes" in r for r in ours):
        ceiling = (med("ours", lambda r: r["ceiling_episodes_per_s"])
                   if all("ceiling_episodes_per_s" in r for r in ours) else None)
        out.update(train_passes_gflops=round(med("ours", lambda r: r["achieved_gflops_train_passes"]), 1),
                   peak_gflops=round(med("ours", lambda r: r.get("train_passes_peak_gflops",
                                                                 r["machine_matmul_gflops"])), 1),
                   train_passes_share_of_peak=round(med("ours", share_of_peak), 3),
                   ceiling_episodes_per_s=None if ceiling is None else round(ceiling, 3))
    checks = {"vs_stock": out["ours_vs_stock"] >= targets.vs_stock,
              "vs_gc_freeze": out["ours_vs_gc_freeze"] >= targets.vs_gc_freeze}
    if targets.rss_share is not None:
        checks["rss"] = out["rss_vs_anchor"] <= targets.rss_share
    if targets.peak_share is not None:
        checks["peak"] = out.get("train_passes_share_of_peak", 0.0) >= targets.peak_share
    if len({json.dumps(r["fingerprints"], sort_keys=True) for r in rows}) != 1:
        checks["same_start"] = False  # the runs did not start from the same weights/prompts/tokenizer
    out.update(targets=dict(targets.__dict__), checks=checks, met=all(checks.values()))
    return out


def print_summary(groups: list[dict], ok: bool) -> None:
    print(f"\n{datetime.date.today()}, {os.cpu_count()} CPUs, {cpu_model()}, medians:")
    print("| size | precision | threads | episodes | anchor stock | anchor gc-freeze | ours | ours/stock | "
          "ours/gc-freeze | peak RSS ours/anchor | training passes / peak | runs | targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for g in groups:
        head = f"| {g['size']} | {g['precision']} | {g['threads']} | {g['episodes']} |"
        if not g["complete"]:
            print(f"{head} incomplete: {', '.join(f'{v} {n}' for v, n in g['runs'].items())} |")
            continue
        eps = g["episodes_per_s"]
        peak = (f"{g['train_passes_gflops']:.0f} / {g['peak_gflops']:.0f} GFLOP/s = "
                f"{100 * g['train_passes_share_of_peak']:.0f}%" if "peak_gflops" in g else "-")
        missed = [k for k, v in g["checks"].items() if not v]
        print(f"{head} {eps['stock']:.3f} | {eps['gc_freeze']:.3f} | {eps['ours']:.3f} | {g['ours_vs_stock']:.2f}x | "
              f"{g['ours_vs_gc_freeze']:.2f}x | {g['peak_rss_mb']['ours']:.0f} / "
              f"{statistics.median([g['peak_rss_mb']['stock'], g['peak_rss_mb']['gc_freeze']]):.0f} MB = "
              f"{100 * g['rss_vs_anchor']:.0f}% | {peak} | {min(g['runs'].values())} | "
              f"{'met' if not missed else 'missed: ' + ', '.join(missed)} |")
    for g in groups:
        if not g["complete"] or g["met"]:
            continue
        t = g["targets"]
        print(f"\n{g['size']} {g['precision']}: targets ours >= {t['vs_stock']}x stock, >= {t['vs_gc_freeze']}x "
              f"gc-freeze" + (f", peak RSS <= {100 * t['rss_share']:.0f}% of the anchor's" if t["rss_share"] else "")
              + (f", training passes >= {100 * t['peak_share']:.0f}% of the peak" if t["peak_share"] else "")
              + f"; missed: {', '.join(k for k, v in g['checks'].items() if not v)}. Phase shares (median):")
        print("| variant | " + " | ".join(PHASES) + " | other |")
        print("|---|" + "---|" * (len(PHASES) + 1))
        for v in VARIANTS:
            print(f"| {v} | " + " | ".join(f"{100 * g['phase_share'][v][p]:.0f}%" for p in [*PHASES, "other"]) + " |")
        if g.get("ceiling_episodes_per_s"):
            c = g["ceiling_episodes_per_s"]
            eps = g["episodes_per_s"]
            print(f"ours' training passes: {g['train_passes_gflops']:.1f} GFLOP/s against a {g['precision']} matmul "
                  f"peak of {g['peak_gflops']:.1f}; with them at the peak and every other phase as measured, ours "
                  f"would reach {c:.3f} episodes/s = {c / eps['stock']:.2f}x stock, {c / eps['gc_freeze']:.2f}x "
                  f"gc-freeze (the ceiling)")
    print(f"\ntargets: {'met' if ok else 'NOT met'}")


def summarize(rows: list[dict]) -> tuple[bool, list[dict]]:
    """Print the summary of benchmark rows; True when every group meets its targets, and the group records."""
    rows = [r for r in rows if r.get("variant") is not None]  # summary records of earlier runs are skipped
    keys = sorted({group_key(r) for r in rows})
    groups = [summarize_group(k, [r for r in rows if group_key(r) == k]) for k in keys]
    ok = bool(groups) and all(g["met"] for g in groups)
    print_summary(groups, ok)
    return ok, groups


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=None, choices=TOY_SIZES,
                   help="toy sizes (default: tiny small without --model, none with it)")
    p.add_argument("--model", type=Path, default=None,
                   help="a saved causal LM (e.g. models/base, the converted SmolLM2): compared in each precision")
    p.add_argument("--precision", default=None,
                   help="comma-separated: fp32, bf16 (default: fp32,bf16 on the model, fp32 on the toy sizes)")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"rounds per group (default: tiny 3, small 2, model {MODEL_ROUNDS})")
    p.add_argument("--episodes", type=int, default=None, help="total episodes everywhere (model default 32)")
    p.add_argument("--batch-size", type=int, default=None, help="rollout batch (model default 16)")
    p.add_argument("--response-length", type=int, default=None, help="new tokens per response (model default 32)")
    p.add_argument("--ppo-epochs", type=int, default=None, help="PPO epochs per rollout (model default 2)")
    p.add_argument("--mini-batches", type=int, default=None, help="mini-batches per PPO epoch (model default 1)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results" / f"{datetime.date.today()}.jsonl",
                   help="JSON lines are appended here (default: bench/results/<date>.jsonl)")
    p.add_argument("--anchor-dir", type=Path, default=REPO.parent / "shared" / "anchors")
    p.add_argument("--anchor-venv", type=Path, default=REPO / "bench" / ".venv-anchor")
    p.add_argument("--artifacts", type=Path, default=REPO / "bench" / "out" / "artifacts")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both sides (default: params.yaml runtime.num_threads)")
    p.add_argument("--summarize", type=Path, default=None, help="only print the summary of this results file")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = [] if args.model is not None else list(TOY_SIZES)
    if args.precision is not None:
        args.precision = [x.strip() for x in args.precision.split(",") if x.strip()]
        bad = [x for x in args.precision if x not in ("fp32", "bf16")]
        if bad or not args.precision:
            p.error(f"--precision: {','.join(bad) or 'empty'}: must be fp32, bf16 or fp32,bf16")
    for key in ("rounds", *ANCHOR_FLAGS):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')}: must be >= 1")
    if args.model is not None and not (args.model / "config.json").is_file():
        p.error(f"--model {args.model}: no config.json there: not a saved model directory")
    if not args.summarize and not args.sizes and args.model is None:
        p.error("nothing to measure: give --sizes and/or --model")
    args.num_threads = args.threads or load_section("runtime", REPO / "params.yaml").num_threads
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        return 0 if summarize(rows)[0] else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads), "MKL_NUM_THREADS": str(args.num_threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)  # the anchor's --bf16 sets it; an inherited one would leak into fp32
    # Build (or check) the anchor venv once, outside every timed run: --help exits after the imports.
    subprocess.run(["bash", str(args.anchor_dir / "run_trl_ppo_anchor.sh"), str(args.anchor_venv), "--help"],
                   env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    groups = plan(args)
    # ours refuses a precision its rlhfpipe has no switch for: find out before the first timed run
    for precision in sorted({g.precision for g in groups}):
        run_json([sys.executable, "-m", "bench.ppo_throughput", str(args.artifacts), "--check-precision",
                  "--precision", precision], env)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows, saved = [], set()
    for group in groups:
        artifacts = args.artifacts / group.name
        for rnd in range(group.rounds):
            # the first anchor stock run of a size or model (re)writes the artifacts ours starts from; the
            # weights, prompts and settings do not depend on the precision, so its other precision reuses them
            order = VARIANTS[rnd % 3:] + VARIANTS[:rnd % 3]
            for variant in order:
                if variant == "ours":
                    row = run_json(ours_cmd(args, group, artifacts), env)
                else:
                    save = variant == "stock" and group.name not in saved
                    row = run_json(anchor_cmd(args, group, variant, artifacts if save else None), env)
                    if save:
                        saved.add(group.name)
                row["bench"] = dict(started=started, round=rnd, order=order)
                rows.append(row)
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{group.name} {group.precision} round {rnd + 1}/{group.rounds} {variant:9s} "
                      f"{row['episodes_per_s']:7.3f} episodes/s ({row['train_wall_s']:.1f} s, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB)", flush=True)
    ok, groups = summarize(rows)
    with open(args.results, "a") as f:
        f.write(json.dumps(dict(harness="compare_ppo_summary", started=started, date=str(datetime.date.today()),
                                cpu=cpu_model(), cpu_count=os.cpu_count(), threads=args.num_threads,
                                groups=groups, met=ok)) + "\n")
    print(f"results and summary appended to {args.results}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
