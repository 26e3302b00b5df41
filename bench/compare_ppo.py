#!/usr/bin/env python
"""Our PPO against the TRL anchor, back to back: the throughput targets (2x stock TRL, 1.25x TRL with gc.freeze).

Targets, on both sizes: ours >= 2x the anchor's stock episodes/s and >= 1.25x its ``--gc-freeze``
episodes/s (medians over rounds). Per size, each round runs anchor stock, anchor --gc-freeze and ours
one after the other, rotating the order every round so that drift in machine load hits every variant.
The first anchor run of a size also saves its artifacts (tokenizer, prompts, initial weights,
settings), from which ``ppo_throughput.py`` starts ours. Every JSON line is appended to the results
file; a summary table with medians and ratios is printed at the end. Exit status 1 when a target is missed.

    .venv/bin/python -m bench.compare_ppo                       # tiny x3 rounds, small x2 rounds
    .venv/bin/python -m bench.compare_ppo --sizes tiny --rounds 1 --episodes 32   # smoke run
    .venv/bin/python -m bench.compare_ppo --summarize bench/results/2025-11-22.jsonl

The anchor runs in its own venv (TRL 0.29.1 cannot share ours), built on first use at bench/.venv-anchor
by the anchor's run_trl_ppo_anchor.sh. Both sides run with OMP_NUM_THREADS and torch threads set to
params.yaml ``runtime.num_threads`` (2), or to ``--threads``: on a machine shared with other jobs,
two-thread runs mostly measure OpenMP threads spinning against the other load, and one thread each
is the steadier comparison.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from rlhfpipe.config import load_section

TARGET_VS_STOCK = 2.0
TARGET_VS_GC_FREEZE = 1.25
DEFAULT_ROUNDS = {"tiny": 3, "small": 2}
VARIANTS = ["stock", "gc_freeze", "ours"]


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


def anchor_cmd(args, size: str, variant: str, artifacts: Path | None) -> list[str]:
    cmd = ["bash", str(args.anchor_dir / "run_trl_ppo_anchor.sh"), str(args.anchor_venv), "--size", size]
    if variant == "gc_freeze":
        cmd.append("--gc-freeze")
    if args.episodes:
        cmd += ["--episodes", str(args.episodes)]
    if artifacts is not None:
        cmd += ["--save-artifacts", str(artifacts)]
    return cmd


def ours_cmd(args, size: str, artifacts: Path) -> list[str]:
    cmd = [sys.executable, "-m", "bench.ppo_throughput", str(artifacts), "--size", size,
           "--num-threads", str(args.num_threads)]
    if args.episodes:
        cmd += ["--episodes", str(args.episodes)]
    return cmd


def summarize(rows: list[dict]) -> bool:
    """Print medians and ratios per size, thread count and episodes; True when every group meets both targets."""
    ok = True
    print(f"\n{datetime.date.today()}, {os.cpu_count()} CPUs, {cpu_model()}, median episodes/s:")
    print("| size | threads | episodes | anchor stock | anchor gc-freeze | ours | ours/stock | ours/gc-freeze | runs |")
    print("|---|---|---|---|---|---|---|---|---|")
    key = lambda r: (list(DEFAULT_ROUNDS).index(r["size"]), r["size"], r["torch_threads"], r["episodes"])  # noqa: E731
    for group_key in sorted({key(r) for r in rows}):
        _, size, threads, episodes = group_key
        group = [r for r in rows if key(r) == group_key]
        eps = {v: [r["episodes_per_s"] for r in group if r["variant"] == v] for v in VARIANTS}
        if not all(eps.values()):
            counts = ", ".join(f"{v} {len(x)}" for v, x in eps.items())
            print(f"| {size} | {threads} | {episodes} | incomplete: {counts} |")
            ok = False
            continue
        med = {v: statistics.median(x) for v, x in eps.items()}
        vs_stock, vs_freeze = med["ours"] / med["stock"], med["ours"] / med["gc_freeze"]
        ok &= vs_stock >= TARGET_VS_STOCK and vs_freeze >= TARGET_VS_GC_FREEZE
        print(f"| {size} | {threads} | {episodes} | {med['stock']:.2f} | {med['gc_freeze']:.2f} | {med['ours']:.2f} | "
              f"{vs_stock:.2f}x | {vs_freeze:.2f}x | {min(len(x) for x in eps.values())} |")
        if len({json.dumps(r["fingerprints"], sort_keys=True) for r in group}) != 1:
            print(f"warning: {size}: runs started from different weights/prompts/tokenizer (fingerprints differ)")
            ok = False
    flop_rows = [r for r in rows if r["variant"] == "ours" and "machine_matmul_gflops" in r]
    if flop_rows:
        print("\nours against the machine (medians): model GFLOP/s over the run and over the training passes, "
              "the fp32 matmul GFLOP/s measured in the same process, and the episodes/s ours would reach if its "
              "training passes ran at that rate and everything else took no time:")
        print("| size | threads | episodes | GFLOP/s run | GFLOP/s training passes | machine matmul GFLOP/s | "
              "episodes/s ceiling | ceiling/stock |")
        print("|---|---|---|---|---|---|---|---|")
        for group_key in sorted({key(r) for r in flop_rows}):
            _, size, threads, episodes = group_key
            group = [r for r in flop_rows if key(r) == group_key]
            med = lambda f: statistics.median(f(r) for r in group)  # noqa: E731
            peak = med(lambda r: r["machine_matmul_gflops"])
            train_gflop = med(lambda r: r["model_gflop"]["train_forward"] + r["model_gflop"]["backward"])
            ceiling = episodes / (train_gflop / peak)
            stock = [r["episodes_per_s"] for r in rows if key(r) == group_key and r["variant"] == "stock"]
            vs_stock = f"{ceiling / statistics.median(stock):.2f}x" if stock else "-"
            print(f"| {size} | {threads} | {episodes} | {med(lambda r: r['achieved_gflops']):.1f} | "
                  f"{med(lambda r: r['achieved_gflops_train_passes']):.1f} | {peak:.1f} | {ceiling:.2f} | {vs_stock} |")
    sizes = ", ".join(s for s in DEFAULT_ROUNDS if any(r["size"] == s for r in rows))
    print(f"targets (ours >= {TARGET_VS_STOCK}x stock and >= {TARGET_VS_GC_FREEZE}x gc-freeze) on {sizes}: "
          f"{'met' if ok else 'NOT met'}")
    return ok


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_ROUNDS), choices=list(DEFAULT_ROUNDS))
    p.add_argument("--rounds", type=int, default=None, help="rounds per size (default: tiny 3, small 2)")
    p.add_argument("--episodes", type=int, default=None, help="override total episodes everywhere (smoke runs)")
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results" / f"{datetime.date.today()}.jsonl",
                   help="JSON lines are appended here (default: bench/results/<date>.jsonl)")
    p.add_argument("--anchor-dir", type=Path, default=REPO.parent / "shared" / "anchors")
    p.add_argument("--anchor-venv", type=Path, default=REPO / "bench" / ".venv-anchor")
    p.add_argument("--artifacts", type=Path, default=REPO / "bench" / "out" / "artifacts")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both sides (default: params.yaml runtime.num_threads)")
    p.add_argument("--summarize", type=Path, default=None, help="only print the summary of this results file")
    args = p.parse_args(argv)
    args.num_threads = args.threads or load_section("runtime", REPO / "params.yaml").num_threads
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        return 0 if summarize(rows) else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads), "MKL_NUM_THREADS": str(args.num_threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    # Build (or check) the anchor venv once, outside every timed run: --help exits after the imports.
    subprocess.run(["bash", str(args.anchor_dir / "run_trl_ppo_anchor.sh"), str(args.anchor_venv), "--help"],
                   env=env, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for size in args.sizes:
        artifacts = args.artifacts / size
        rounds = args.rounds or DEFAULT_ROUNDS[size]
        for rnd in range(rounds):
            # round 0 starts with the anchor's stock run, which (re)writes the artifacts ours starts from
            order = VARIANTS[rnd % 3:] + VARIANTS[:rnd % 3]
            for variant in order:
                if variant == "ours":
                    row = run_json(ours_cmd(args, size, artifacts), env)
                else:
                    save = artifacts if rnd == 0 and variant == "stock" else None
                    row = run_json(anchor_cmd(args, size, variant, save), env)
                row["bench"] = dict(started=started, round=rnd, order=order)
                rows.append(row)
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{size} round {rnd + 1}/{rounds} {variant:9s} {row['episodes_per_s']:7.2f} episodes/s "
                      f"({row['train_wall_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB)", flush=True)
    print(f"results appended to {args.results}")
    return 0 if summarize(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
