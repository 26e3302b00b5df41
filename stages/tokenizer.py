"""Stage tokenizer: train a byte-level BPE on the SFT training split, or adapt a pretrained one."""

from pathlib import Path

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.io import atomic_path, read_jsonl
from rlhfpipe.models.loading import adapt_pretrained_tokenizer, train_tokenizer


def main(argv: list[str]) -> None:
    prepared, out_dir = usage(argv, 2, "tokenizer.py PREPARED_DIR OUT_DIR")
    cfg, model_cfg = load_section("tokenizer"), load_section("model")
    if model_cfg.name_or_path:
        tokenizer = adapt_pretrained_tokenizer(model_cfg.name_or_path, model_cfg.trust_remote_code)
    else:
        rows = read_jsonl(Path(prepared) / "sft_train.jsonl") + read_jsonl(Path(prepared) / "pairs_train.jsonl")
        texts = [m["content"] for r in rows for m in r["prompt"]]
        texts += [r["completion"][0]["content"] if "completion" in r else r["chosen"] for r in rows]
        tokenizer = train_tokenizer(texts, cfg.vocab_size)
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
    print(f"tokenizer: {len(tokenizer)} tokens -> {out_dir}")


if __name__ == "__main__":
    run_stage(main)
