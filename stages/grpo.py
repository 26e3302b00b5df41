"""Stage grpo: tune the SFT policy with TRL's GRPO against the registry rewards (the same terms as PPO)."""

from pathlib import Path

from rlhfpipe import distributed
from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.data.summary_prompt import summary_references
from rlhfpipe.devices import stage_device, stage_precision
from rlhfpipe.io import atomic_path, read_jsonl, write_json
from rlhfpipe.models.loading import load_tokenizer, save_model
from rlhfpipe.models.prompt_length import drop_long_prompts
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training import trackers
from rlhfpipe.training.common import file_digest, fingerprint, open_live
from rlhfpipe.training.grpo import train_grpo


def main(argv: list[str]) -> None:
    prepared, sft_dir, reward_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 6, "grpo.py PREPARED_DIR SFT_DIR REWARD_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg = load_section("runtime"), load_section("grpo")
    setup_runtime(runtime.num_threads, cfg.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "grpo")
    device = stage_device(launched=True)
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(sft_dir)
    rows, dropped = drop_long_prompts(tokenizer, read_jsonl(Path(prepared) / "prompts_train.jsonl"),
                                      cfg.max_prompt_length, "grpo.max_prompt_length", conversation=lambda r: r["prompt"])
    prompts = [r["prompt"] for r in rows]
    registry = RewardRegistry(RewardModel(reward_dir, device), normalize_reward_model=cfg.normalize_rewards,
                              cohesion_weights=load_section("cohesion"), references=summary_references(rows))
    key = fingerprint(as_dict(cfg), as_dict(runtime), precision, file_digest(Path(prepared) / "prompts_train.jsonl"),
                      file_digest(Path(sft_dir)), file_digest(Path(reward_dir)))
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        model, metrics = train_grpo(cfg, sft_dir, tokenizer, prompts, registry, live, key,
                                    precision=precision)
        live.end()
    if not distributed.is_main():  # the policy and metrics are written once, by the main process
        return
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
    write_json(metrics_path, {**metrics, "prompts_dropped": dropped})
    print(f"grpo: {metrics}")


if __name__ == "__main__":
    run_stage(main)
