"""Stage corpus: generate the embedded emotional-support corpus (MultiMood/MESC JSONL)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhfpipe.cli import run_stage, usage  # noqa: E402
from rlhfpipe.config import load_section  # noqa: E402
from rlhfpipe.data.corpus import generate_corpus  # noqa: E402
from rlhfpipe.io import write_jsonl  # noqa: E402


def main(argv: list[str]) -> None:
    (out_path,) = usage(argv, 1, "corpus.py OUT_JSONL")
    cfg = load_section("corpus")
    rows = generate_corpus(cfg.n_dialogues, cfg.seed)
    write_jsonl(out_path, rows)
    print(f"corpus: {cfg.n_dialogues} dialogues, {len(rows)} therapist turns -> {out_path}")


if __name__ == "__main__":
    run_stage(main)
