"""Supervised fine-tuning with TRL's SFTTrainer, loss on the therapist response only."""

from __future__ import annotations

import math
import datasets

from rlhfpipe.config import ModelConfig, SFTConfig
from rlhfpipe.models.loading import build_causal_lm, count_params, disable_dropout, load_causal_lm, peft_config
from rlhfpipe.training.common import LiveCallback, checkpoint_dir, clear_checkpoints, refuse_zero3, trainer_arguments


def _dataset(rows: list[dict]) -> datasets.Dataset:
    # Conversational prompt-completion rows: TRL masks the prompt out of the loss (completion_only_loss).
    return datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])


def train_sft(cfg: SFTConfig, model_cfg: ModelConfig, tokenizer, train_rows: list[dict], val_rows: list[dict],
              live, resume_key: str, stage: str = "sft", model_key: str = "model", base_dir: str | None = None,
              precision: str = "fp32"):
    """Train and return (model, metrics). Checkpoints go to checkpoints/<stage> and are resumed when valid.

    The model starts from ``base_dir`` (an earlier stage's output) when given, else from ``model_cfg``:
    its name_or_path, or built from scratch; ``model_key`` is the params section ``model_cfg`` came from.
    The model trains with fp32 master weights whatever ``model_cfg.dtype`` (bf16 masters round small updates
    away); ``precision`` bf16 is TRL's bf16 autocast."""
    from trl import SFTConfig as TrlSFTConfig
    from trl import SFTTrainer

    if base_dir is not None:
        model = load_causal_lm(base_dir, tokenizer, dtype=model_cfg.dtype)
    elif model_cfg.name_or_path:
        model = load_causal_lm(model_cfg.name_or_path, tokenizer, dtype=model_cfg.dtype,
                               trust_remote_code=model_cfg.trust_remote_code, allow_pickle=model_cfg.allow_pickle,
                               key=f"{model_key}.name_or_path")
    else:
        model = build_causal_lm(model_cfg, tokenizer)
    model.float()
    disable_dropout(model)
    ckpt, resume = checkpoint_dir(stage, resume_key)
    if resume:
        print(f"{stage}: resuming from {resume}")
    args = TrlSFTConfig(
        **trainer_arguments(
            ckpt, epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay, seed=cfg.seed,
            n_examples=len(train_rows), save_every=cfg.save_every, precision=precision,
            batch_key="sft.batch_size",
        ),
        max_length=cfg.max_length,
        completion_only_loss=True,
        gradient_checkpointing=cfg.gradient_checkpointing,
        packing=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(train_rows),
        eval_dataset=_dataset(val_rows),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora, "CAUSAL_LM") if cfg.lora.enabled else None,
        callbacks=[LiveCallback(live, ("loss", "learning_rate", "grad_norm", "eval_loss"))],
    )
    refuse_zero3(trainer)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    eval_loss = trainer.evaluate()["eval_loss"]
    model = trainer.model
    if cfg.lora.enabled:
        model = model.merge_and_unload()
    clear_checkpoints(stage)
    final_train = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "params": count_params(model),
        "steps": trainer.state.global_step,
        "train_loss": round(final_train[-1], 4) if final_train else None,
        "eval_loss": round(eval_loss, 4),
        "eval_perplexity": round(math.exp(min(eval_loss, 50.0)), 3),
    }
    return model, metrics
