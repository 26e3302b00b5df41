"""Stage sft: supervised fine-tuning of the policy on the therapist responses."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhfpipe import distributed  # noqa: E402
from rlhfpipe.cli import run_stage, setup_runtime, usage  # noqa: E402
from rlhfpipe.config import as_dict, load_section  # noqa: E402
from rlhfpipe.devices import stage_device  # noqa: E402
from rlhfpipe.io import atomic_path, read_jsonl, write_json  # noqa: E402
from rlhfpipe.modeling import DTYPES, load_tokenizer, save_model  # noqa: E402
from rlhfpipe.training.common import file_digest, fingerprint, open_live  # noqa: E402
from rlhfpipe.training.sft import train_sft  # noqa: E402


def main(argv: list[str]) -> None:
    prepared, base_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 5, "sft.py PREPARED_DIR BASE_MODEL_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg, model_cfg = load_section("runtime"), load_section("sft"), load_section("model")
    setup_runtime(runtime.num_threads, cfg.seed)
    stage_device(launched=True)
    tokenizer = load_tokenizer(base_dir)
    train_rows = read_jsonl(Path(prepared) / "sft_train.jsonl")
    val_rows = read_jsonl(Path(prepared) / "sft_val.jsonl")
    key = fingerprint(as_dict(cfg), model_cfg.dtype, as_dict(runtime),
                      file_digest(Path(prepared) / "sft_train.jsonl"), file_digest(Path(base_dir)))
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        model, metrics = train_sft(cfg, model_cfg, tokenizer, train_rows, val_rows, live, key,
                                   base_dir=base_dir, precision=runtime.precision)
        live.end()
    if not distributed.is_main():  # the model and metrics are written once, by the main process
        return
    with atomic_path(out_dir) as tmp:
        save_model(model.to(DTYPES[model_cfg.dtype]), tokenizer, tmp)
    write_json(metrics_path, metrics)
    print(f"sft: {metrics}")


if __name__ == "__main__":
    run_stage(main)
