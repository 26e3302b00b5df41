"""Stage moodpo_eval: MOODPO and SFT over the weight grid; per-objective means, hypervolumes, Pareto rows."""

import csv
from pathlib import Path

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import load_section
from rlhfpipe.data.summary_prompt import summary_references
from rlhfpipe.devices import place, stage_device
from rlhfpipe.evaluation.monitors import moodpo_monitors
from rlhfpipe.io import atomic_path, read_jsonl, write_json
from rlhfpipe.models.loading import load_causal_lm, load_tokenizer
from rlhfpipe.moodpo.evaluation import evaluate_grid
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel


def main(argv: list[str]) -> None:
    prepared, sft_dir, moodpo_dir, reward_dir, metrics_path, pareto_dir = usage(
        argv, 6, "moodpo_eval.py PREPARED_DIR SFT_DIR MOODPO_DIR REWARD_DIR METRICS_JSON PARETO_DIR")
    runtime, moodpo, cfg = load_section("runtime"), load_section("moodpo"), load_section("moodpo_eval")
    monitors = load_section("monitors")
    cfg.validate_against(moodpo.objectives)
    setup_runtime(runtime.num_threads, cfg.seed)
    tokenizer = load_tokenizer(sft_dir)
    device = stage_device()
    policies = {"moodpo": place(load_causal_lm(moodpo_dir, tokenizer).eval(), device),
                "sft": place(load_causal_lm(sft_dir, tokenizer).eval(), device)}
    names = [o.name for o in moodpo.objectives]
    rows = read_jsonl(Path(prepared) / "prompts_test.jsonl")
    registry = RewardRegistry(RewardModel(reward_dir, device) if "reward_model" in names else None,
                              cohesion_weights=load_section("cohesion"), references=summary_references(rows))
    metrics, pareto = evaluate_grid(policies, tokenizer, registry, moodpo.objectives, rows, cfg)
    metrics["hypervolume_gain_over_sft"] = round(metrics["moodpo"]["hypervolume"] - metrics["sft"]["hypervolume"], 5)
    metrics["monitors"] = moodpo_monitors(metrics["moodpo"], metrics["sft"], names, monitors)
    with atomic_path(pareto_dir) as tmp:  # one CSV per policy, so DVC's scatter plots tell them apart
        tmp.mkdir()
        for policy, rows_out in pareto.items():
            with (tmp / f"{policy}.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows_out[0]))
                writer.writeheader()
                writer.writerows(rows_out)
    write_json(metrics_path, metrics)
    for policy in policies:
        checks = ", ".join(f"{k} {v['high']:.3f}>{v['low']:.3f}={v['responds']} (95% CI of the difference "
                           f"{v['difference_ci95'][0]:+.3f}..{v['difference_ci95'][1]:+.3f})"
                           for k, v in metrics[policy]["responsiveness"].items())
        print(f"moodpo_eval {policy}: hypervolume {metrics[policy]['hypervolume']:.4f}; {checks}")
    spread = ", ".join(f"{k} {v:.3f}" for k, v in metrics["monitors"]["spread_sft_std"].items())
    print(f"moodpo_eval monitors: spread over the grid in SFT std: {spread}; flags: {', '.join(metrics['monitors']['flags']) or 'none'}")


if __name__ == "__main__":
    run_stage(main)
