"""Stage moodpo_warmup: weight-conditioned best-of-n fine-tuning of START_DIR, the policy MOODPO's iteration 1 starts from."""

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import place, refuse_deepspeed, stage_device, stage_precision
from rlhfpipe.io import atomic_path, write_json
from rlhfpipe.models.loading import disable_dropout, load_causal_lm, load_tokenizer, save_model
from rlhfpipe.moodpo.training import fitting_prompts, objective_registry
from rlhfpipe.moodpo.warmup import best_of_n_rows, train_warmup
from rlhfpipe.training import trackers
from rlhfpipe.training.common import open_live


def scored_rows(policy, tokenizer, cfg, prompts, prompts_path: str, reward_dir: str, precision: str, device):
    """The warm-up's rows; the reward model lives only while they are scored, not through the fine-tune."""
    registry = objective_registry([o.name for o in cfg.objectives], prompts_path, reward_dir,
                                  load_section("cohesion"), device)
    return best_of_n_rows(policy, tokenizer, registry, cfg, prompts, precision, device)


def main(argv: list[str]) -> None:
    prompts_path, start_dir, reward_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 6, "moodpo_warmup.py PROMPTS START_DIR REWARD_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg = load_section("runtime"), load_section("moodpo")
    warm = cfg.warmup
    setup_runtime(runtime.num_threads, warm.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, "moodpo_warmup")
    device = stage_device(single_process=True)
    refuse_deepspeed("moodpo_warmup")
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(start_dir)
    policy = place(load_causal_lm(start_dir, tokenizer), device)
    disable_dropout(policy)
    metrics = {"rows": 0}
    with atomic_path(curves_dir) as curves:
        live = open_live(curves)
        if warm.prompts:
            prompts, dropped = fitting_prompts(tokenizer, cfg, prompts_path)
            rows, stats = scored_rows(policy, tokenizer, cfg, prompts, prompts_path, reward_dir, precision, device)
            metrics = {"rows": len(rows), "prompts_dropped": dropped, **stats,
                       **train_warmup(policy, tokenizer, rows, cfg, live, precision, device)}
        live.end()
    with atomic_path(out_dir) as tmp:
        save_model(policy.eval(), tokenizer, tmp)
        write_json(tmp / "moodpo_warmup_config.json", as_dict(warm))
    write_json(metrics_path, metrics)
    print("moodpo_warmup: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    run_stage(main)
