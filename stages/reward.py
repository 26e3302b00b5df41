"""Stage reward: train the reward model on the preference pairs, then measure it on held-out pairs."""

from pathlib import Path

from rlhfpipe import distributed
from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import place, stage_device, stage_precision
from rlhfpipe.io import atomic_path, read_jsonl, write_json
from rlhfpipe.models.loading import load_causal_lm, load_tokenizer, save_model
from rlhfpipe.rewards.reward_model import RewardModel, STATS_FILE
from rlhfpipe.training import trackers
from rlhfpipe.training.common import file_digest, fingerprint, open_live
from rlhfpipe.training.reward_model import evaluate_reward, normalisation_stats, train_reward


def main(argv: list[str]) -> None:
    prepared, pairs_dir, sft_dir, out_dir, metrics_path, calibration_path, curves_dir = usage(
        argv, 7, "reward.py PREPARED_DIR PAIRS_DIR SFT_DIR OUT_DIR METRICS_JSON CALIBRATION_JSON CURVES_DIR")
    runtime, cfg = load_section("runtime"), load_section("reward")
    setup_runtime(runtime.num_threads, cfg.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "reward")
    device = stage_device(launched=True)
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(sft_dir)
    train_rows, test_rows = read_jsonl(Path(pairs_dir) / "train.jsonl"), read_jsonl(Path(pairs_dir) / "test.jsonl")
    key = fingerprint(as_dict(cfg), as_dict(runtime), precision, file_digest(Path(pairs_dir)), file_digest(Path(sft_dir)))
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        model, train_metrics = train_reward(cfg, sft_dir, tokenizer, train_rows, test_rows, live, key,
                                            precision=precision)
        live.end()
    if not distributed.is_main():  # evaluation and every output belong to the main process
        return
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
        rm = RewardModel(tmp, device)
        sft = place(load_causal_lm(sft_dir, tokenizer).eval(), device)
        train_prompts = [r["prompt"] for r in read_jsonl(Path(prepared) / "prompts_train.jsonl")]
        stats = normalisation_stats(rm, sft, tokenizer, train_prompts, cfg)
        write_json(tmp / STATS_FILE, stats)
        metrics, calibration = evaluate_reward(rm, test_rows, cfg)
    write_json(metrics_path, {**metrics, **train_metrics, "sft_sample_reward_mean": stats["mean"],
                              "sft_sample_reward_std": stats["std"]})
    write_json(calibration_path, calibration)
    print(f"reward: {metrics}")


if __name__ == "__main__":
    run_stage(main)
