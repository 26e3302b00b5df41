"""Stage base_model: the model every later stage starts from (from-scratch or a converted pretrained one)."""

from pathlib import Path

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.io import atomic_path
from rlhfpipe.models.base import build_base
from rlhfpipe.models.loading import count_params, save_model


def main(argv: list[str]) -> None:
    prepared, out_dir = usage(argv, 2, "base_model.py PREPARED_DIR OUT_DIR")
    tok_cfg, model_cfg = load_section("tokenizer"), load_section("model")
    model, tokenizer = build_base(Path(prepared), model_cfg, tok_cfg)
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
    print(f"base_model: {count_params(model):,} parameters, {len(tokenizer)} tokens -> {out_dir}")


if __name__ == "__main__":
    run_stage(main)
