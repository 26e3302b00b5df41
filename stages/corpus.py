"""Stage corpus: generate the embedded emotional-support corpus (MultiMood/MESC JSONL)."""

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.data.corpus import generate_corpus
from rlhfpipe.io import write_jsonl


def main(argv: list[str]) -> None:
    (out_path,) = usage(argv, 1, "corpus.py OUT_JSONL")
    cfg = load_section("corpus")
    rows = generate_corpus(cfg.n_dialogues, cfg.seed)
    write_jsonl(out_path, rows)
    print(f"corpus: {cfg.n_dialogues} dialogues, {len(rows)} therapist turns -> {out_path}")


if __name__ == "__main__":
    run_stage(main)
