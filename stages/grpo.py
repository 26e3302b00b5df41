"""Stage grpo: tune the SFT policy with TRL's GRPO against the registry rewards (the same terms as PPO)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlhfpipe import distributed  # noqa: E402
from rlhfpipe.cli import run_stage, setup_runtime, usage  # noqa: E402
from rlhfpipe.config import as_dict, load_section  # noqa: E402
from rlhfpipe.data.summary_prompt import summary_references  # noqa: E402
from rlhfpipe.devices import stage_device  # noqa: E402
from rlhfpipe.io import atomic_path, read_jsonl, write_json  # noqa: E402
from rlhfpipe.modeling import load_tokenizer, save_model  # noqa: E402
from rlhfpipe.prompt_length import drop_long_prompts  # noqa: E402
from rlhfpipe.rewards.registry import RewardRegistry  # noqa: E402
from rlhfpipe.rewards.reward_model import RewardModel  # noqa: E402
from rlhfpipe.training.common import file_digest, fingerprint, open_live  # noqa: E402
from rlhfpipe.training.grpo import train_grpo  # noqa: E402


def main(argv: list[str]) -> None:
    prepared, sft_dir, reward_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 6, "grpo.py PREPARED_DIR SFT_DIR REWARD_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg = load_section("runtime"), load_section("grpo")
    setup_runtime(runtime.num_threads, cfg.seed)
    device = stage_device(launched=True)
    tokenizer = load_tokenizer(sft_dir)
    rows, dropped = drop_long_prompts(tokenizer, read_jsonl(Path(prepared) / "prompts_train.jsonl"),
                                      cfg.max_prompt_length, "grpo.max_prompt_length", conversation=lambda r: r["prompt"])
    prompts = [r["prompt"] for r in rows]
    registry = RewardRegistry(RewardModel(reward_dir, device), normalize_reward_model=cfg.normalize_rewards,
                              references=summary_references(rows))
    key = fingerprint(as_dict(cfg), as_dict(runtime), file_digest(Path(prepared) / "prompts_train.jsonl"),
                      file_digest(Path(sft_dir)), file_digest(Path(reward_dir)))
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        model, metrics = train_grpo(cfg, sft_dir, tokenizer, prompts, registry, live, key,
                                    precision=runtime.precision)
        live.end()
    if not distributed.is_main():  # the policy and metrics are written once, by the main process
        return
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
    write_json(metrics_path, {**metrics, "prompts_dropped": dropped})
    print(f"grpo: {metrics}")


if __name__ == "__main__":
    run_stage(main)
