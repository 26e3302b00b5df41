"""Stage compare: one table of every evaluated policy, bar-chart data, and the ranked samples page."""

import csv
import io
import json
from pathlib import Path

from rlhfpipe.cli import run_stage, usage
from rlhfpipe.config import load_section
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.metrics import paired_win_rate, ranked_markdown, reward_gain_in_sft_std, summary_markdown
from rlhfpipe.evaluation.monitors import monitors_markdown, policy_monitors
from rlhfpipe.io import read_jsonl, write_json, write_text

TABLE_METRICS = ["reward_mean", "reward_normalized_mean", "reward_gain_sft_std", "win_rate_vs_sft", "empathy_ratio", "rouge_l", "kl_to_sft",
                 "response_words", "distinct_1", "distinct_2", "cohesion"]


def main(argv: list[str]) -> None:
    eval_dir, summary_json, summary_md, policies_csv, ranked_md, samples_dir = usage(
        argv, 6, "compare.py EVAL_METRICS_DIR SUMMARY_JSON SUMMARY_MD POLICIES_CSV RANKED_MD EVAL_DATA_DIR")
    files = sorted(Path(eval_dir).glob("*.json"), key=lambda p: (p.stem != "sft", p.stem))
    if not files:
        raise PipelineError(f"{eval_dir}: no evaluation metrics; run the evaluate stages first")
    monitors_cfg = load_section("monitors")
    summary = {p.stem: json.loads(p.read_text()) for p in files}
    monitors_md = ""
    if "sft" in summary:
        sft = summary["sft"]
        sft_samples = read_jsonl(Path(samples_dir) / "sft" / "samples.jsonl")
        for name, metrics in summary.items():
            metrics["win_rate_vs_sft"] = round(
                paired_win_rate(read_jsonl(Path(samples_dir) / name / "samples.jsonl"), sft_samples), 5)
            metrics["reward_gain_sft_std"] = round(
                reward_gain_in_sft_std(metrics["reward_mean"], sft["reward_mean"], sft["reward_std"]), 5)
        monitors = {name: policy_monitors(name, metrics, sft, monitors_cfg) for name, metrics in summary.items()}
        for name, values in monitors.items():
            summary[name]["monitors"] = values
        monitors_md = "\n" + monitors_markdown(monitors, monitors_cfg)
    write_json(summary_json, summary)
    write_text(summary_md, "# Policies on held-out prompts\n\n" + summary_markdown(summary, TABLE_METRICS) + monitors_md + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["policy", *TABLE_METRICS])
    for name, metrics in summary.items():
        writer.writerow([name, *[metrics.get(m) if metrics.get(m) is not None else "" for m in TABLE_METRICS]])
    write_text(policies_csv, buffer.getvalue())
    ranked = [row for name in summary for row in json.loads((Path(samples_dir) / name / "ranked.json").read_text())]
    write_text(ranked_md, ranked_markdown(ranked))
    print(f"compare: {', '.join(summary)} -> {summary_md}")


if __name__ == "__main__":
    run_stage(main)
