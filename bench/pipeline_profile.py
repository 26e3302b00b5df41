#!/usr/bin/env python
"""Wall time and peak memory of each stage of a ``dvc repro`` (or ``dvc exp run``): the pipeline's time and
memory targets are checked with this, never with a timed test.

    .venv/bin/python -m bench.pipeline_profile [--out bench/out/pipeline.json] -- dvc repro [ARGS...]

DVC's own output passes through, each line prefixed with the minutes:seconds since the start. A stage runs
from its "Running stage" line to the next one (or the end). Every 0.25 s the resident memory of every process
under the command is summed, DVC's own process left out, so a stage's peak is what its script (and any
launcher's worker processes) held at once. The table goes to stdout, and to ``--out`` as JSON. The exit code
is the command's.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def tree_rss(root: psutil.Process) -> int:
    """Bytes resident in ``root``'s descendants (``root`` itself excluded: it is DVC, not the stage)."""
    total = 0
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # ended between the listing and the read
            pass
    return total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the per-stage figures here as JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --, e.g. -- dvc repro")

    stages: list[dict] = []  # {"stage", "start", "end", "peak_rss"} in run order
    peak_total = 0
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_total
        while not done.wait(0.25):
            try:
                rss = tree_rss(root)
            except psutil.Error:
                continue
            peak_total = max(peak_total, rss)
            if stages:
                stages[-1]["peak_rss"] = max(stages[-1]["peak_rss"], rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        now = time.monotonic() - start
        match = STAGE_LINE.search(line)
        if match:
            if stages:
                stages[-1]["end"] = now
            stages.append({"stage": match.group(1), "start": now, "end": None, "peak_rss": 0})
        sys.stdout.write(f"[{int(now // 60):3d}:{int(now % 60):02d}] {line}")
        sys.stdout.flush()
    code = proc.wait()
    done.set()
    sampler.join()
    total = time.monotonic() - start
    if stages:
        stages[-1]["end"] = total

    rows = [{"stage": s["stage"], "seconds": round(s["end"] - s["start"], 1),
             "peak_rss_gib": round(s["peak_rss"] / 2**30, 2)} for s in stages]
    print(f"\n| stage | time | peak RSS (GiB) |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['stage']} | {int(r['seconds'] // 60)}:{int(r['seconds'] % 60):02d} | {r['peak_rss_gib']:.2f} |")
    print(f"| **total** (exit {code}) | **{int(total // 60)}:{int(total % 60):02d}** | **{peak_total / 2**30:.2f}** |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": command, "exit_code": code, "seconds": round(total, 1),
                                        "peak_rss_gib": round(peak_total / 2**30, 2), "stages": rows}, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
