"""Stage evaluate@<policy>: score one policy on the held-out prompts (the same prompts and seeds for every policy)."""

from pathlib import Path

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import load_section
from rlhfpipe.devices import place, stage_device
from rlhfpipe.evaluation.policy import evaluate_policy, ranked_samples
from rlhfpipe.io import read_jsonl, write_json, write_jsonl
from rlhfpipe.models.loading import load_causal_lm, load_tokenizer
from rlhfpipe.rewards.reward_model import RewardModel


def main(argv: list[str]) -> None:
    name, policy_dir, prepared, sft_dir, reward_dir, metrics_path, samples_path, ranked_path = usage(
        argv, 8, "evaluate.py NAME POLICY_DIR PREPARED_DIR SFT_DIR REWARD_DIR METRICS_JSON SAMPLES_JSONL RANKED_JSON")
    runtime, cfg = load_section("runtime"), load_section("evaluate")
    setup_runtime(runtime.num_threads, cfg.seed)
    tokenizer = load_tokenizer(sft_dir)
    device = stage_device()
    sft = place(load_causal_lm(sft_dir, tokenizer).eval(), device)
    policy = sft if Path(policy_dir).resolve() == Path(sft_dir).resolve() else place(
        load_causal_lm(policy_dir, tokenizer).eval(), device)
    rm = RewardModel(reward_dir, device)
    rows = read_jsonl(Path(prepared) / "prompts_test.jsonl")
    metrics, samples = evaluate_policy(name, policy, sft, tokenizer, rm, rows, cfg, load_section("cohesion"))
    ranked = ranked_samples(name, policy, tokenizer, rm, rows, cfg)
    write_jsonl(samples_path, samples)
    write_json(ranked_path, ranked)
    write_json(metrics_path, metrics)
    print(f"evaluate {name}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    run_stage(main)
