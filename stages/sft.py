"""Stage sft: supervised fine-tuning of the policy on the therapist responses."""

from pathlib import Path

from rlhfpipe import distributed
from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import stage_device, stage_precision
from rlhfpipe.io import atomic_path, read_jsonl, write_json
from rlhfpipe.models.loading import DTYPES, load_tokenizer, save_model
from rlhfpipe.training import trackers
from rlhfpipe.training.common import file_digest, fingerprint, open_live
from rlhfpipe.training.sft import train_sft


def main(argv: list[str]) -> None:
    prepared, base_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 5, "sft.py PREPARED_DIR BASE_MODEL_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg, model_cfg = load_section("runtime"), load_section("sft"), load_section("model")
    setup_runtime(runtime.num_threads, cfg.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "sft")
    device = stage_device(launched=True)
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(base_dir)
    train_rows = read_jsonl(Path(prepared) / "sft_train.jsonl")
    val_rows = read_jsonl(Path(prepared) / "sft_val.jsonl")
    key = fingerprint(as_dict(cfg), model_cfg.dtype, as_dict(runtime), precision,
                      file_digest(Path(prepared) / "sft_train.jsonl"), file_digest(Path(base_dir)))
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        model, metrics = train_sft(cfg, model_cfg, tokenizer, train_rows, val_rows, live, key,
                                   base_dir=base_dir, precision=precision)
        live.end()
    if not distributed.is_main():  # the model and metrics are written once, by the main process
        return
    with atomic_path(out_dir) as tmp:
        save_model(model.to(DTYPES[model_cfg.dtype]), tokenizer, tmp)
    write_json(metrics_path, metrics)
    print(f"sft: {metrics}")


if __name__ == "__main__":
    run_stage(main)
