"""Stage moodpo@<n>: one MOODPO iteration (online DPO under per-prompt objective weights) from START_DIR."""

from rlhfpipe.cli import run_stage, setup_runtime, usage
from rlhfpipe.config import as_dict, load_section
from rlhfpipe.devices import refuse_deepspeed, stage_device, stage_precision
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import atomic_path, write_json
from rlhfpipe.models.loading import load_tokenizer, save_model
from rlhfpipe.moodpo.training import fitting_prompts, objective_registry, train_moodpo, weighted_prompts
from rlhfpipe.training import trackers
from rlhfpipe.training.common import open_live


def main(argv: list[str]) -> None:
    n, prompts_path, start_dir, reward_dir, out_dir, metrics_path, curves_dir = usage(
        argv, 7, "moodpo.py ITERATION PROMPTS START_DIR REWARD_DIR OUT_DIR METRICS_JSON CURVES_DIR")
    runtime, cfg = load_section("runtime"), load_section("moodpo")
    if n not in ("1", "2"):
        raise PipelineError(f"moodpo.py: ITERATION must be 1 or 2, got {n!r}")
    it = getattr(cfg, f"iteration_{n}")
    setup_runtime(runtime.num_threads, it.seed)
    trackers.activate(runtime.report_to, runtime.tracker_dir, f"moodpo_{n}")
    device = stage_device(single_process=True)
    refuse_deepspeed(f"moodpo@{n}")
    precision = stage_precision(runtime.precision, device)
    tokenizer = load_tokenizer(start_dir)
    names = [o.name for o in cfg.objectives]
    prompts, dropped = fitting_prompts(tokenizer, cfg, prompts_path)
    rows = weighted_prompts(prompts, names, cfg.alpha, cfg.weights_per_prompt, it)
    registry = objective_registry(names, prompts_path, reward_dir, load_section("cohesion"), device)
    with atomic_path(curves_dir) as curves:
        live = open_live(curves)
        model, metrics = train_moodpo(cfg, it, start_dir, tokenizer, rows, registry, live, precision, device)
        live.end()
    with atomic_path(out_dir) as tmp:
        save_model(model, tokenizer, tmp)
        # this iteration's params only: the other iteration's are no dependency of this stage
        shared = {k: v for k, v in as_dict(cfg).items() if not k.startswith("iteration_")}
        write_json(tmp / "moodpo_config.json", {**shared, "iteration": int(n), **as_dict(it)})
    metrics["prompts_dropped"] = dropped
    write_json(metrics_path, metrics)
    print(f"moodpo@{n}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    run_stage(main)
