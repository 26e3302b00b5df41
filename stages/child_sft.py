"""Stage child_sft: train the dialogue child (by default a small from-scratch model) on its speaker's turns."""

from pathlib import Path

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import stage_device
from rlhfpipe.dialogue.windows import read_windows, sft_rows
from rlhfpipe.io import atomic_path, write_json
from rlhfpipe.models.loading import adapt_pretrained_tokenizer, load_tokenizer, save_model
from rlhfpipe.training.common import file_digest, fingerprint, NullLive
from rlhfpipe.training.sft import train_sft


def main(argv: list[str]) -> None:
    prepared, base_dir, out_dir, metrics_path = usage(
        argv, 4, "child_sft.py PREPARED_DIR BASE_MODEL_DIR OUT_DIR METRICS_JSON")
    runtime, cfg = load_section("runtime"), load_section("dialogue")
    setup_runtime(runtime.num_threads, cfg.child_sft.seed)
    stage_device(single_process=True)
    child = cfg.child
    # a pretrained child keeps its own tokenizer; a from-scratch one shares the base model's
    tokenizer = (adapt_pretrained_tokenizer(child.name_or_path, child.trust_remote_code) if child.name_or_path
                 else load_tokenizer(base_dir))
    train, val = (read_windows(Path(prepared) / f"dialogues_{split}.jsonl", cfg.min_words, cfg.max_words,
                               cfg.context_turns)[0] for split in ("train", "val"))
    key = fingerprint(as_dict(cfg.child_sft), as_dict(child), as_dict(runtime), cfg.min_words, cfg.max_words,
                      cfg.context_turns, file_digest(Path(prepared) / "dialogues_train.jsonl"),
                      file_digest(Path(base_dir)))
    model, metrics = train_sft(cfg.child_sft, child, tokenizer, sft_rows(train), sft_rows(val), NullLive(), key,
                               stage="child_sft", model_key="dialogue.child")
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
    write_json(metrics_path, {**metrics, "train_turns": len(train), "val_turns": len(val)})
    print(f"child_sft: {metrics}, {len(train)} training turns")


if __name__ == "__main__":
    run_stage(main)
