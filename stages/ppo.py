"""Stage ppo: tune the SFT policy with our PPO against the registry rewards (reward model by default)."""

from pathlib import Path

from rlhfpipe import distributed
from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.data.summary_prompt import summary_references
from rlhfpipe.devices import refuse_deepspeed, stage_device, stage_precision
from rlhfpipe.evaluation.plots import training_panels
from rlhfpipe.io import atomic_path, read_jsonl, write_json
from rlhfpipe.models.loading import load_tokenizer, save_model
from rlhfpipe.models.prompt_length import drop_long_prompts
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training import trackers
from rlhfpipe.training.common import checkpoint_dir, clear_checkpoints, file_digest, fingerprint, open_live
from rlhfpipe.training.ppo import build_models, run_config, train_ppo


def main(argv: list[str]) -> None:
    prepared, sft_dir, reward_dir, out_dir, metrics_path, curves_dir, figure_path = usage(
        argv, 7, "ppo.py PREPARED_DIR SFT_DIR REWARD_DIR OUT_DIR METRICS_JSON CURVES_DIR FIGURE_PNG")
    runtime, cfg = load_section("runtime"), load_section("ppo")
    setup_runtime(runtime.num_threads, cfg.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "ppo")
    refuse_deepspeed("ppo")
    device = stage_device(launched=True)
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(sft_dir)
    rows, dropped = drop_long_prompts(tokenizer, read_jsonl(Path(prepared) / "prompts_train.jsonl"),
                                      cfg.max_prompt_length, "ppo.max_prompt_length", conversation=lambda r: r["prompt"])
    prompts = [r["prompt"] for r in rows]
    models = build_models(cfg, sft_dir, reward_dir, tokenizer, device)
    registry = RewardRegistry(RewardModel(reward_dir, device), normalize_reward_model=cfg.normalize_rewards,
                              cohesion_weights=load_section("cohesion"), references=summary_references(rows),
                              length_floor_fraction=cfg.length_floor)
    key = fingerprint(as_dict(cfg), as_dict(runtime), precision, file_digest(Path(prepared) / "prompts_train.jsonl"),
                      file_digest(Path(sft_dir)), file_digest(Path(reward_dir)))
    ckpt, _ = checkpoint_dir("ppo", key)
    with distributed.main_output(curves_dir) as curves:
        live = open_live(curves)
        state = train_ppo(cfg, models, tokenizer, prompts, registry, live, ckpt, precision=precision)
        live.end()
    if not distributed.is_main():  # the policy, metrics and figure are written once, by the main process
        return
    policy = models.policy.merge_and_unload() if cfg.lora.enabled else models.policy
    with atomic_path(out_dir) as tmp:
        save_model(policy, tokenizer, tmp)
        write_json(tmp / "ppo_config.json", run_config(cfg))
    with atomic_path(figure_path) as tmp:
        training_panels(state.history, tmp, "PPO training")
    last = state.history[-1]
    first = state.history[0]
    write_json(metrics_path, {"updates": state.update, "first_score": first["objective/score"],
                              "final_score": last["objective/score"], "final_kl": last["objective/kl"],
                              "final_kl_coef": state.kl_coef, "final_entropy": last["policy/entropy"],
                              "prompts_dropped": dropped})
    clear_checkpoints("ppo")
    print(f"ppo: {state.update} updates, score {first['objective/score']:.3f} -> {last['objective/score']:.3f}, "
          f"kl {last['objective/kl']:.3f}")


if __name__ == "__main__":
    run_stage(main)
