"""Stage prepare: read data.source at data.path, split by dialogue, write SFT examples and prompt sets."""

from pathlib import Path

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.data.formats import read_records
from rlhfpipe.data.prepare import check_disjoint, prepare
from rlhfpipe.data.summary import prepare_summary, read_summary_csv
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import atomic_path, write_json, write_jsonl


def main(argv: list[str]) -> None:
    out_dir, metrics_path = usage(argv, 2, "prepare.py OUT_DIR METRICS_JSON")
    cfg = load_section("data")
    if cfg.task == "summary":
        summary_csv = cfg.source == "prompt_csv"  # its rows hold a dialogue and a summary, not a prompt
        records = read_summary_csv(Path(cfg.path), cfg) if summary_csv else read_records(cfg.source, cfg.path, cfg)
        files, metrics = prepare_summary(records, cfg)
    else:
        files, metrics = prepare(read_records(cfg.source, cfg.path, cfg), cfg)
    check_disjoint(files)
    if not files["sft_train"] and not files["pairs_train"] and not files["prompts_train"]:
        raise PipelineError(f"{cfg.path}: no usable training records after preparation (dropped: {metrics['dropped']})")
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, rows in files.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
    write_json(metrics_path, metrics)
    print("prepare: " + ", ".join(f"{k}={v}" for k, v in metrics["counts"].items() if v))


if __name__ == "__main__":
    run_stage(main)
