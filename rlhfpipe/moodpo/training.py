"""One MOODPO iteration: TRL's OnlineDPOTrainer with a reward that reads each prompt's weights.

Every training prompt gets a weight vector drawn from Dirichlet(alpha). The vector goes into the prompt
as the weight instruction (rlhfpipe.moodpo.weights) and into the dataset column ``weights``. OnlineDPOTrainer
samples two completions per prompt, hands extra dataset columns to reward functions as keyword arguments
(repeated for both completions), and trains on the pair the reward orders. So the reward sees exactly the
weights the policy was shown, and the trainer needs no loop of our own.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch

from rlhfpipe.config import MoodpoConfig, MoodpoIteration
from rlhfpipe.data.readers.base import column_text, csv_rows
from rlhfpipe.devices import trl_precision
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import read_jsonl
from rlhfpipe.models.loading import disable_dropout, load_causal_lm
from rlhfpipe.moodpo.weights import sample_weights, weighted_reward, with_instruction, without_instruction
from rlhfpipe.training import trackers
from rlhfpipe.training.common import CHECKPOINT_ROOT, LiveCallback

LOGGED = ("loss", "grad_norm", "objective/scores", "objective/scores_margin", "objective/kl", "rewards/margins",
          "rewards/accuracies", "val/contain_eos_token")


def load_prompts(path: str, prompt_column: str) -> list[list[dict]]:
    """Chat prompts from a prepared prompt set (.jsonl) or from a CSV column (one user message per row)."""
    if path.endswith(".jsonl"):
        return [r["prompt"] for r in read_jsonl(path)]
    if not Path(path).is_file():
        raise PipelineError(f"{path}: file not found (params.yaml: moodpo.prompts)")
    prompts = []
    for row in csv_rows(Path(path)):
        text = column_text(row, prompt_column, "moodpo.prompt_column")
        if not text:
            raise PipelineError(f"{row.where}: empty prompt in column '{prompt_column}'")
        prompts.append([{"role": "user", "content": text}])
    if not prompts:
        raise PipelineError(f"{path}: no prompts")
    return prompts


def weighted_prompts(prompts: list[list[dict]], names: list[str], alpha: float, per_prompt: int,
                     it: MoodpoIteration) -> datasets.Dataset:
    """``steps * batch_size`` rows in training order: each prompt (in a seeded order, cycling if there are
    fewer) ``per_prompt`` times in a row, each time with its own weights."""
    n = it.steps * it.batch_size // per_prompt
    rng = np.random.default_rng(it.seed)
    order = np.concatenate([rng.permutation(len(prompts)) for _ in range(-(-n // len(prompts)))])[:n]
    weights = sample_weights(n * per_prompt, len(names), alpha, it.seed)
    return datasets.Dataset.from_list([{"prompt": with_instruction(prompts[i], names, w), "weights": w.tolist()}
                                       for i, w in zip(np.repeat(order, per_prompt), weights)])


class WeightedObjectives:
    """The reward callable OnlineDPOTrainer calls: registry objectives weighted by each example's weights."""

    __name__ = "weighted_objectives"

    def __init__(self, registry, names: list[str]):
        self.registry, self.names = registry, names

    def __call__(self, prompts, completions, weights, **kwargs) -> list[float]:
        plain = [without_instruction(p) for p in prompts]
        texts = [c[-1]["content"] for c in completions]  # conversational: [{"role": "assistant", ...}]
        scores = torch.stack([self.registry.score(n, plain, texts) for n in self.names], dim=1)  # (2B, K)
        return weighted_reward(scores, torch.tensor(weights, dtype=torch.float32)).tolist()


def train_moodpo(cfg: MoodpoConfig, it: MoodpoIteration, name: str, start_dir: str, tokenizer,
                 dataset: datasets.Dataset, registry, live, precision: str):
    """Train one iteration from the policy in ``start_dir`` (also the DPO reference); return (model, metrics).
    ``precision`` bf16 is TRL's bf16 autocast over fp32 master weights."""
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    model = load_causal_lm(start_dir, tokenizer)
    disable_dropout(model)
    args = OnlineDPOConfig(
        output_dir=str(CHECKPOINT_ROOT / name),
        max_steps=it.steps,
        per_device_train_batch_size=it.batch_size // cfg.grad_accum,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=it.learning_rate,
        lr_scheduler_type="constant",
        beta=[it.beta],
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        max_length=cfg.max_length,
        missing_eos_penalty=cfg.missing_eos_penalty,
        seed=it.seed,
        data_seed=it.seed,
        **trl_precision(precision),
        use_cpu=not torch.cuda.is_available(),
        report_to=trackers.hf_report_to(),
        # our order keeps a prompt's copies in one batch: contrasting weights on the same prompt is what
        # teaches the policy to read them
        train_sampling_strategy="sequential",
        save_strategy="no",  # a run takes seconds: restarting is cheaper than checkpoints
        logging_steps=1,
        dataloader_num_workers=0,
        disable_tqdm=True,
        gradient_checkpointing=False,  # TRL turns it on by default, and with it generation runs without the KV cache
    )
    trainer = OnlineDPOTrainer(
        model=model,
        reward_funcs=WeightedObjectives(registry, [o.name for o in cfg.objectives]),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[LiveCallback(live, LOGGED)],
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "objective/scores" in h]
    metrics = {
        "steps": trainer.state.global_step,
        "first_scores_margin": round(logs[0]["objective/scores_margin"], 4),
        "final_scores_margin": round(logs[-1]["objective/scores_margin"], 4),
        "final_kl": round(logs[-1]["objective/kl"], 4),
        "final_eos_rate": round(logs[-1]["val/contain_eos_token"], 4),
    }
    return trainer.model.eval(), metrics
