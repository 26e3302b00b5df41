"""Mean ± std over the seed experiments and the seeds meeting each target, as markdown (rlhfpipe.evaluation.seeds).

    python scripts/seed_table.py [--prefix seed-] [--show-json FILE] [--out metrics/seeds.md]

Reads `dvc exp show --json` (run here, or from FILE), keeps the finished experiments named PREFIX..., reads their
metrics files from their commits with `git show` (the JSON leaves out list values such as the 95% intervals),
writes the table.
"""

import argparse
import json
import subprocess
from pathlib import Path

from rlhfpipe.cli import run_stage
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.seeds import aggregate, experiment_metrics, experiments_from_show, seed_table_markdown
from rlhfpipe.io import write_text


def git_show(rev: str, path: str) -> str:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git show failed")
    return proc.stdout


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="seed-", help="experiment names to aggregate start with this")
    parser.add_argument("--show-json", help="saved `dvc exp show --json` output instead of running it")
    parser.add_argument("--out", default="metrics/seeds.md", help="markdown table to write")
    args = parser.parse_args(argv)
    if args.show_json:
        path = Path(args.show_json)
        if not path.is_file():
            raise PipelineError(f"{path}: file not found")
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        # the commit by hash: on a detached HEAD, `dvc exp show` lists a branch's experiments, not HEAD's
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode != 0:
            raise PipelineError(f"git rev-parse HEAD failed: {head.stderr.strip().splitlines()[-1:]}")
        proc = subprocess.run(["dvc", "exp", "show", "--json", "--rev", head.stdout.strip()], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise PipelineError(f"dvc exp show --json failed: {proc.stderr.strip().splitlines()[-1:]}")
        text, where = proc.stdout, "dvc exp show --json"
    try:
        show = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"{where}:{err.lineno}: not valid JSON ({err.msg})") from None
    revs = experiments_from_show(show, args.prefix)
    table = seed_table_markdown(aggregate(experiment_metrics(revs, git_show)))
    write_text(args.out, "# RL results over seeds\n\n" + table)
    print(table)


if __name__ == "__main__":
    run_stage(main)
