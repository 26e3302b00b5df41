"""Reward model: TRL's RewardTrainer on a one-label sequence classifier started from the SFT backbone."""

from __future__ import annotations

from collections import defaultdict

import datasets
import numpy as np
import torch

from rlhfpipe.config import RewardConfig
from rlhfpipe.evaluation.metrics import bootstrap_ci, calibration_bins, pairwise_accuracy
from rlhfpipe.models.generation import generate_texts
from rlhfpipe.models.loading import count_params, disable_dropout, load_sequence_classifier, peft_config
from rlhfpipe.rewards.reward_model import RewardModel
from rlhfpipe.training.common import LiveCallback, checkpoint_dir, clear_checkpoints, refuse_zero3, trainer_arguments


def _dataset(rows: list[dict], margin: float) -> datasets.Dataset:
    records = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
    if margin > 0:
        for rec in records:
            rec["margin"] = margin
    return datasets.Dataset.from_list(records)


def train_reward(cfg: RewardConfig, sft_dir: str, tokenizer, train_rows: list[dict], test_rows: list[dict],
                 live, resume_key: str, precision: str = "fp32"):
    """Train and return the (merged) model; checkpoints in checkpoints/reward are resumed when valid."""
    from trl import RewardConfig as TrlRewardConfig
    from trl import RewardTrainer

    model = load_sequence_classifier(sft_dir, tokenizer)
    disable_dropout(model)
    ckpt, resume = checkpoint_dir("reward", resume_key)
    if resume:
        print(f"reward: resuming from {resume}")
    args = TrlRewardConfig(
        **trainer_arguments(
            ckpt, epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            warmup_ratio=0.05, weight_decay=0.0, seed=cfg.seed, n_examples=len(train_rows),
            save_every=0.25, precision=precision,
            batch_key="reward.batch_size",
        ),
        max_length=cfg.max_length,
        center_rewards_coefficient=cfg.center_rewards_coefficient or None,
        disable_dropout=True,
    )
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(train_rows, cfg.margin),
        eval_dataset=_dataset(test_rows, cfg.margin),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.lora, "SEQ_CLS") if cfg.lora.enabled else None,
        callbacks=[LiveCallback(live, ("loss", "learning_rate", "grad_norm", "accuracy", "margin", "eval_loss",
                                       "eval_accuracy", "eval_margin"))],
    )
    refuse_zero3(trainer)
    # TRL drops every pair with a side longer than max_length; count them so a cap that bites shows in metrics
    dropped = {"train": len(train_rows) - len(trainer.train_dataset), "test": len(test_rows) - len(trainer.eval_dataset)}
    if dropped["train"]:
        print(f"reward: {dropped['train']} of {len(train_rows)} training pairs are longer than "
              f"reward.max_length={cfg.max_length} tokens and were left out of training")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    if cfg.lora.enabled:
        model = model.merge_and_unload()
    clear_checkpoints("reward")
    return model.eval(), {"params": count_params(model), "steps": trainer.state.global_step,
                          "pairs_dropped_too_long": dropped}


def evaluate_reward(rm: RewardModel, test_rows: list[dict], cfg: RewardConfig) -> tuple[dict, list[dict]]:
    """Held-out accuracy with a bootstrap interval, margin, per-source accuracy, length baseline, calibration."""
    prompts = [r["prompt"] for r in test_rows]
    chosen = rm.score(prompts, [r["chosen"][0]["content"] for r in test_rows]).tolist()
    rejected = rm.score(prompts, [r["rejected"][0]["content"] for r in test_rows]).tolist()
    wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)]
    low, high = bootstrap_ci(wins, cfg.bootstrap_samples, cfg.seed)
    by_source = defaultdict(list)
    for row, w in zip(test_rows, wins):
        by_source[row["source"]].append(w)
    length_wins = []
    for r in test_rows:
        lc, lr = len(r["chosen"][0]["content"].split()), len(r["rejected"][0]["content"].split())
        length_wins.append(1.0 if lc > lr else 0.5 if lc == lr else 0.0)
    metrics = {
        "accuracy": round(pairwise_accuracy(chosen, rejected), 4),
        "accuracy_ci95": [round(low, 4), round(high, 4)],
        "mean_margin": round(float(np.mean(np.array(chosen) - np.array(rejected))), 4),
        "accuracy_by_source": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_source.items())},
        "length_baseline_accuracy": round(float(np.mean(length_wins)), 4),
        "test_pairs": len(test_rows),
    }
    return metrics, calibration_bins(chosen, rejected, cfg.calibration_bins)


@torch.no_grad()
def normalisation_stats(rm: RewardModel, sft, tokenizer, prompts: list[list[dict]], cfg: RewardConfig) -> dict:
    """Mean and std of the reward on SFT samples for training prompts (Huang et al. 2023, "N+ implementation
    details"): the distribution PPO's first rollouts come from, so its scores start at mean 0, std 1. The same
    samples' mean words per response is the SFT length that the length_floor reward's floor is a fraction of.

    ``cfg.norm_prompts`` prompts, evenly spaced through the list, so the choice does not depend on its order's
    start only; sampled with a generator seeded by ``cfg.seed``.
    """
    step = max(1, len(prompts) // cfg.norm_prompts)
    chosen = prompts[::step][:cfg.norm_prompts]
    responses = generate_texts(sft, tokenizer, chosen, batch_size=64, max_new_tokens=cfg.norm_max_new_tokens,
                               temperature=cfg.norm_temperature, seed=cfg.seed)
    scores = rm.score(chosen, responses)
    std = float(scores.std()) if len(scores) > 1 else 1.0
    words = sum(len(r.split()) for r in responses) / max(1, len(responses))
    return {"mean": round(float(scores.mean()), 6), "std": round(max(std, 1e-6), 6), "n": len(chosen),
            "words_mean": round(words, 6)}
