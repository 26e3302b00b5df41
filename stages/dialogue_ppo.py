"""Stage dialogue_ppo: tune the child with our PPO against the cohesion of the windows it writes with the teacher."""

from pathlib import Path

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import stage_device
from rlhfpipe.dialogue.windows import as_prompt, child_turns, DialogueReward, load_teacher, read_windows, score_windows
from rlhfpipe.evaluation.metrics import bootstrap_ci
from rlhfpipe.io import atomic_path, write_json, write_jsonl
from rlhfpipe.models.loading import load_tokenizer, save_model
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.turn_guard import turn_metrics, TurnGuard
from rlhfpipe.training import trackers
from rlhfpipe.training.common import checkpoint_dir, clear_checkpoints, file_digest, fingerprint, open_live
from rlhfpipe.training.ppo import build_models, checkpoint_interval, run_config, train_ppo


def main(argv: list[str]) -> None:
    prepared, child_dir, sft_dir, out_dir, metrics_path, curves_dir, samples_path = usage(
        argv, 7, "dialogue_ppo.py PREPARED_DIR CHILD_DIR SFT_DIR OUT_DIR METRICS_JSON CURVES_DIR SAMPLES_JSONL")
    runtime, cfg = load_section("runtime"), load_section("dialogue")
    setup_runtime(runtime.num_threads, cfg.ppo.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "dialogue_ppo")
    device = stage_device()
    words = (cfg.min_words, cfg.max_words, cfg.context_turns)
    train, train_dialogues = read_windows(Path(prepared) / "dialogues_train.jsonl", *words)
    held_out = read_windows(Path(prepared) / "dialogues_test.jsonl", *words)[0][:cfg.eval_windows]
    ppo = cfg.ppo_for(len(train))
    tokenizer = load_tokenizer(child_dir)
    teacher = load_teacher(cfg, sft_dir, device)
    # no reward model to start a separate value model from: value_model separate reuses the child's backbone
    models = build_models(ppo, child_dir, child_dir, tokenizer, device)

    def evaluate(policy) -> tuple[dict, list[dict]]:  # same windows, same seeds for every policy
        turns = child_turns(policy, tokenizer, held_out, batch_size=ppo.batch_size, max_new_tokens=ppo.max_new_tokens,
                            temperature=cfg.eval_temperature, seed=cfg.seed)
        return score_windows(held_out, turns, teacher, cfg.cohesion, ppo.batch_size)

    before, before_rows = evaluate(models.policy)
    reference, _ = score_windows(held_out, [w.reference for w in held_out], teacher, cfg.cohesion, ppo.batch_size)
    # the length floor is relative to the child's own turns before PPO, on the same held-out windows
    guard = TurnGuard(cfg.turn_length_floor * before["child_words"], cfg.turn_distinct_2_floor)
    reward = DialogueReward(teacher, RewardRegistry(cohesion_weights=cfg.cohesion), guard)
    key = fingerprint(as_dict(cfg), as_dict(runtime), file_digest(Path(prepared) / "dialogues_train.jsonl"),
                      file_digest(Path(child_dir)), file_digest(Path(cfg.teacher or sft_dir)))
    ckpt, _ = checkpoint_dir("dialogue_ppo", key)
    with atomic_path(curves_dir) as curves:  # a resumed run replays the killed run's rows into fresh curves
        live = open_live(curves)
        state = train_ppo(ppo, models, tokenizer, [as_prompt(w.context) for w in train], reward, live, ckpt)
        live.end()
    policy = models.policy.merge_and_unload() if ppo.lora.enabled else models.policy
    after, after_rows = evaluate(policy)
    with atomic_path(out_dir) as tmp:
        save_model(policy, tokenizer, tmp)
        write_json(tmp / "ppo_config.json", run_config(ppo))
    write_jsonl(samples_path, [{"dialogue_id": w.dialogue_id, "context": w.context, "reference": w.reference,
                                "before": b, "after": a} for w, b, a in zip(held_out, before_rows, after_rows)])
    gain = [a["cohesion"] - b["cohesion"] for a, b in zip(after_rows, before_rows)]
    gain_ci95 = [round(x, 6) for x in bootstrap_ci(gain, 1000, cfg.seed)]  # paired: same windows, same seeds
    write_json(metrics_path, {
        "cohesion_before": before["cohesion"], "cohesion_after": after["cohesion"], "cohesion_gain_ci95": gain_ci95,
        "cohesion_reference": reference["cohesion"], "before": before, "after": after, "reference": reference,
        **turn_metrics(before_rows, after_rows, guard),
        "train_windows": len(train), "train_dialogues": train_dialogues, "eval_windows": len(held_out),
        "num_updates": ppo.num_updates, "episodes": ppo.total_episodes, "checkpoint_interval": checkpoint_interval(ppo),
        "final_score": state.history[-1]["objective/score"], "final_kl": state.history[-1]["objective/kl"]})
    clear_checkpoints("dialogue_ppo")
    print(f"dialogue_ppo: {ppo.num_updates} updates on {len(train)} windows, held-out cohesion "
          f"{before['cohesion']:.4f} -> {after['cohesion']:.4f} (gain 95% CI {gain_ci95[0]:+.4f}..{gain_ci95[1]:+.4f}; "
          f"reference turns {reference['cohesion']:.4f}); child words per turn {before['child_words']:.2f} -> "
          f"{after['child_words']:.2f}")


if __name__ == "__main__":
    run_stage(main)
