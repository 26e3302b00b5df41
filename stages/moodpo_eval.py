"""Stage moodpo_eval: MOODPO and SFT over the weight grid; per-objective means, hypervolumes, Pareto rows."""

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhfpipe.cli import run_stage, setup_runtime, usage  # noqa: E402
from rlhfpipe.config import load_section  # noqa: E402
from rlhfpipe.data.summary_prompt import summary_references  # noqa: E402
from rlhfpipe.devices import place, stage_device  # noqa: E402
from rlhfpipe.evaluation_monitors import moodpo_monitors  # noqa: E402
from rlhfpipe.io import atomic_path, read_jsonl, write_json  # noqa: E402
from rlhfpipe.modeling import load_causal_lm, load_tokenizer  # noqa: E402
from rlhfpipe.moodpo_eval import evaluate_grid  # noqa: E402
from rlhfpipe.rewards.registry import RewardRegistry  # noqa: E402
from rlhfpipe.rewards.reward_model import RewardModel  # noqa: E402


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
                              references=summary_references(rows))
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
