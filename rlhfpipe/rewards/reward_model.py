"""The reward model as a scorer: one batched ``score(prompts, responses)`` every later stage uses."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rlhfpipe import devices
from rlhfpipe.errors import PipelineError
from rlhfpipe.models.generation import pad_batch, position_ids_from_mask
from rlhfpipe.models.loading import load_sequence_classifier, load_tokenizer

STATS_FILE = "reward_stats.json"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row, for left or right padding alike.

    Naive equivalent: ``[max(i for i in range(T) if mask[b, i]) for b in range(B)]``.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(dim=1)


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) scalar head output at the last non-pad token; positions ignore padding, so the score
    does not depend on the padding side."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask)
    ).last_hidden_state  # (B, T, H)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return model.score(hidden[rows, last_token_index(attention_mask)]).squeeze(-1).float()


def token_values(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) scalar head output at every position: the value model reads it per token."""
    backbone = getattr(model, model.base_model_prefix)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask)
    ).last_hidden_state
    return model.score(hidden).squeeze(-1).float()


def encode_conversations(tokenizer, prompts: list[list[dict]], responses: list[str], padding_side: str = "left"):
    texts = [
        tokenizer.apply_chat_template(p + [{"role": "assistant", "content": r}], tokenize=False)
        for p, r in zip(prompts, responses)
    ]
    return pad_batch(tokenizer, texts, padding_side)


class RewardModel:
    """A trained reward model directory: weights, tokenizer and normalisation statistics."""

    def __init__(self, path: str | Path, device: torch.device | None = None):
        """``device``: where the model scores, the policy's in the stages that train or evaluate one."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise PipelineError(f"{path}: not a reward model directory (no config.json); run the reward stage first")
        self.tokenizer = load_tokenizer(path)
        self.device = device or torch.device("cpu")
        self.model = devices.place(load_sequence_classifier(str(path), self.tokenizer).eval(), self.device)
        stats_path = path / STATS_FILE
        stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {"mean": 0.0, "std": 1.0}
        self.mean, self.std = float(stats["mean"]), float(stats["std"])
        self.stats_path, self.words_mean = stats_path, stats.get("words_mean")
        for p in self.model.parameters():
            p.requires_grad_(False)

    def sft_words(self) -> float:
        """Mean words per response of the SFT samples the statistics were measured on."""
        if self.words_mean is None:
            raise PipelineError(f"{self.stats_path}: no words_mean (SFT's mean words per response), which the "
                                f"length_floor reward reads; rerun the reward stage")
        return float(self.words_mean)

    @torch.no_grad()
    def score(self, prompts: list[list[dict]], responses: list[str], batch_size: int = 64,
              normalize: bool = False) -> torch.Tensor:
        """(N,) rewards of ``responses`` to ``prompts``; normalised by the stored mean/std if asked."""
        out = []
        for start in range(0, len(prompts), batch_size):
            ids, mask = encode_conversations(self.tokenizer, prompts[start:start + batch_size],
                                             responses[start:start + batch_size])
            out.append(sequence_scores(self.model, ids.to(self.device), mask.to(self.device)).cpu())
        scores = torch.cat(out) if out else torch.zeros(0)
        return (scores - self.mean) / self.std if normalize else scores
