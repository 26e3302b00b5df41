"""GRPO: TRL's GRPOTrainer on the SFT policy, rewarded by the same registry (and weights) as PPO.

Each step samples ``num_generations`` responses per prompt; a response's advantage is its reward minus
its group's mean (divided by the group's std by default), so no value model is trained. TRL sums the
registry terms with their weights before normalising (``multi_objective_aggregation``), which is the
weighted sum PPO maximises.
"""

from __future__ import annotations

import datasets
import torch

from rlhfpipe import distributed
from rlhfpipe.config import GRPOConfig, ParamError
from rlhfpipe.devices import trl_precision
from rlhfpipe.models.loading import disable_dropout, load_causal_lm, peft_config
from rlhfpipe.training import trackers
from rlhfpipe.training.common import LiveCallback, checkpoint_dir, clear_checkpoints, refuse_zero3

LOGGED = ("loss", "learning_rate", "grad_norm", "reward", "reward_std", "kl", "entropy", "completions/mean_length",
          "completions/clipped_ratio", "clip_ratio/region_mean", "frac_reward_zero_std")


def registry_reward_functions(registry, terms) -> list:
    """One TRL reward function per registry term; TRL logs each under its ``__name__``."""
    functions = []
    for term in terms:
        def reward(prompts, completions, _name=term.name, **kwargs) -> list[float]:
            texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
            return registry.score(_name, prompts, texts).tolist()

        reward.__name__ = term.name
        functions.append(reward)
    return functions


def train_grpo(cfg: GRPOConfig, sft_dir: str, tokenizer, prompts: list[list[dict]], registry, live, resume_key: str,
               precision: str = "fp32"):
    """Train and return (model, metrics); checkpoints in checkpoints/grpo are resumed when valid. ``precision``
    bf16 is TRL's bf16 autocast over fp32 master weights."""
    from trl import GRPOConfig as TrlGRPOConfig
    from trl import GRPOTrainer

    model = load_causal_lm(sft_dir, tokenizer)
    disable_dropout(model)
    ckpt, resume = checkpoint_dir("grpo", resume_key)
    if resume:
        print(f"grpo: resuming from {resume}")
    per_process = distributed.per_process(cfg.batch_size, "grpo.prompts_per_step")
    if per_process % cfg.grad_accum:
        raise ParamError("grpo.grad_accum", cfg.grad_accum, f"must divide each process's {per_process} responses per step")
    args = TrlGRPOConfig(
        output_dir=str(ckpt),
        max_steps=cfg.steps,
        # TRL generates per_device * steps_per_generation responses per step (steps_per_generation defaults
        # to gradient_accumulation_steps), so the step's batch and its advantages are unchanged
        per_device_train_batch_size=per_process // cfg.grad_accum,
        gradient_accumulation_steps=cfg.grad_accum,
        num_generations=cfg.num_generations,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_schedule,
        max_grad_norm=cfg.max_grad_norm,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        temperature=cfg.temperature,
        top_k=0,
        max_completion_length=cfg.max_completion_length,
        reward_weights=[t.weight for t in cfg.rewards],
        disable_dropout=True,
        use_cpu=not torch.cuda.is_available(),
        **trl_precision(precision),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=trackers.hf_report_to(),
        save_strategy="steps",
        save_steps=max(1, int(cfg.steps * cfg.save_every)),
        save_total_limit=1,
        logging_steps=1,
        dataloader_num_workers=0,
        log_completions=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=registry_reward_functions(registry, cfg.rewards),
        args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": p} for p in prompts]),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora, "CAUSAL_LM") if cfg.lora.enabled else None,
        callbacks=[LiveCallback(live, LOGGED + tuple(f"rewards/{t.name}/mean" for t in cfg.rewards))],
    )
    refuse_zero3(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    if cfg.lora.enabled:
        model = model.merge_and_unload()
    clear_checkpoints("grpo")
    history = [h for h in trainer.state.log_history if "reward" in h]
    metrics = {
        "steps": trainer.state.global_step,
        "first_reward": round(history[0]["reward"], 6),
        "final_reward": round(history[-1]["reward"], 6),
        "final_kl": round(history[-1].get("kl", 0.0), 6),
        "final_response_length": round(history[-1]["completions/mean_length"], 3),
    }
    return model.eval(), metrics
