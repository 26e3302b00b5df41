"""Child-teacher dialogue PPO: dialogue windows, the teacher's partner turn, the window reward.

The child writes the turns of one speaker, the "user" side of a prepared dialogue (MESC's seeker,
Switchboard's caller A); the teacher writes the other side's, the one the main SFT policy learnt. A
window is up to ``context_turns`` earlier turns, the child's turn, then the teacher's reply; the
cohesion reward scores that whole window, so a child turn that the teacher can pick up scores higher.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhfpipe.config import CohesionWeights, DialogueConfig, RewardTerm
from rlhfpipe.data.schema import context_window
from rlhfpipe.errors import PipelineError
from rlhfpipe.io import read_jsonl
from rlhfpipe.models.generation import decode, encode_prompts, generate_texts, sample
from rlhfpipe.models.loading import load_causal_lm, load_tokenizer
from rlhfpipe.rewards.cohesion import INDEX_KEYS, cohesion_indices, cohesion_rewards, tokenize
from rlhfpipe.models.stop_tokens import stop_token_ids

CHILD_ROLE = "user"
"""the speaker the child plays; the teacher plays the other one"""


@dataclass
class Window:
    dialogue_id: str
    context: list[str]
    """earlier turns, oldest first; the last one is the partner's"""
    reference: str
    """the turn the child's speaker really wrote there"""


def speaker_turns(row: dict) -> list[tuple[str, str]]:
    """(role, text) of a prepared dialogue without system turns, consecutive turns of one speaker merged,
    so that speakers alternate (``as_prompt`` relies on it)."""
    turns: list[tuple[str, str]] = []
    for turn in row["turns"]:
        if turn["role"] == "system" or not turn["content"].strip():
            continue
        if turns and turns[-1][0] == turn["role"]:
            turns[-1] = (turn["role"], f"{turns[-1][1]} {turn['content']}")
        else:
            turns.append((turn["role"], turn["content"]))
    return turns


def read_windows(path: Path, min_words: int, max_words: int, context_turns: int) -> tuple[list[Window], int]:
    """Every child turn that answers at least one earlier turn, from dialogues of [min_words, max_words]
    words; also the number of dialogues kept."""
    windows, kept = [], 0
    for row in read_jsonl(path):
        turns = speaker_turns(row)
        if not min_words <= sum(len(text.split()) for _, text in turns) <= max_words:
            continue
        kept += 1
        for i, (role, text) in enumerate(turns):
            if i >= 1 and role == CHILD_ROLE:
                windows.append(Window(row["dialogue_id"], [t for _, t in context_window(turns, i, context_turns)], text))
    if not windows:
        raise PipelineError(f"{path}: no {CHILD_ROLE} turn after another turn in a dialogue of "
                            f"[{min_words}, {max_words}] words (params dialogue.min_words, dialogue.max_words)")
    return windows, kept


def as_prompt(turns: list[str]) -> list[dict]:
    """Chat messages for whoever writes the next turn: roles alternate back from the last turn, the
    partner's ("user"), so the writer is always "assistant", as in SFT, for the child and the teacher alike."""
    n = len(turns)
    return [{"role": "user" if (n - 1 - i) % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def sft_rows(windows: list[Window]) -> list[dict]:
    """Prompt-completion rows teaching the child its speaker's turns."""
    return [{"prompt": as_prompt(w.context), "completion": [{"role": "assistant", "content": w.reference}]}
            for w in windows]


def has_words(turns: list[str]) -> torch.Tensor:
    """(B,) 1.0 for a turn with a word in it, else 0.0. An empty child turn would earn its window the cohesion
    of the context and the teacher's reply alone: the overlap indices skip empty turns, so the teacher's
    reply would count as answering the turn before the child's, which the teacher echoes. PPO found
    that free reward in our first runs; an empty child turn now scores 0."""
    return torch.tensor([1.0 if tokenize(t) else 0.0 for t in turns])


def content_seed(seed: int, windows: list[list[str]]) -> int:
    """A sampling seed derived from the windows themselves: a resumed run, or an evaluation of the same
    windows, draws the same teacher turns as an uninterrupted one without counting calls."""
    digest = hashlib.sha256(json.dumps([seed, windows]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class Teacher:
    """The partner model: writes the turn that follows each window, seeded by the windows' content."""

    def __init__(self, model, tokenizer, *, temperature: float, max_new_tokens: int, seed: int):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.temperature, self.max_new_tokens, self.seed = temperature, max_new_tokens, seed

    def reply(self, windows: list[list[str]]) -> list[str]:
        input_ids, attention_mask = encode_prompts(self.tokenizer, [as_prompt(w) for w in windows])
        device = next(self.model.parameters()).device
        gen = sample(self.model, input_ids.to(device), attention_mask.to(device), max_new_tokens=self.max_new_tokens,
                     temperature=self.temperature, eos_token_id=stop_token_ids(self.tokenizer, self.model),
                     pad_token_id=self.tokenizer.pad_token_id,
                     generator=torch.Generator(device=device).manual_seed(content_seed(self.seed, windows)))
        return decode(self.tokenizer, gen.responses)


class DialogueReward:
    """The registry's ``combine`` interface, for train_ppo: the teacher answers each child turn, then
    ``cohesion`` scores the window [context..., child turn, teacher turn] and every other term the child's
    turn alone (as in the plain PPO stage). A window whose child turn is empty has cohesion 0 (``has_words``);
    with a ``guard`` (rlhfpipe.rewards.turn_guard.TurnGuard), cohesion is also scaled by the guard's factor of
    the child's turn, so shorter or looping turns do not pay."""

    def __init__(self, teacher: Teacher, registry, guard=None):
        self.teacher, self.registry, self.guard = teacher, registry, guard

    def combine(self, terms: list[RewardTerm], prompts: list[list[dict]], responses: list[str]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        windows = [[m["content"] for m in p] + [r] for p, r in zip(prompts, responses)]
        replies = self.teacher.reply(windows)
        guard = self.guard(responses) if self.guard is not None else torch.ones(len(responses))
        components = {t.name: (self.registry.score(t.name, [as_prompt(w) for w in windows], replies)
                               * has_words(responses) * guard
                               if t.name == "cohesion" else self.registry.score(t.name, prompts, responses))
                      for t in terms}
        return sum(t.weight * components[t.name] for t in terms), components


def score_windows(windows: list[Window], child_turns: list[str], teacher: Teacher, weights: CohesionWeights,
                  batch_size: int) -> tuple[dict, list[dict]]:
    """Mean cohesion reward and mean indices of the windows closed by ``child_turns`` and the teacher's
    replies to them; and the child turn, teacher turn and reward of each window."""
    full = [w.context + [c] for w, c in zip(windows, child_turns)]
    replies = [r for i in range(0, len(full), batch_size) for r in teacher.reply(full[i:i + batch_size])]
    dialogues = [f + [r] for f, r in zip(full, replies)]
    rewards = [r * float(w) for r, w in zip(cohesion_rewards(dialogues, weights), has_words(child_turns))]
    indices = [cohesion_indices(d) for d in dialogues]
    summary = {"cohesion": sum(rewards) / len(rewards),
               **{k: sum(ix[k] for ix in indices) / len(indices) for k in INDEX_KEYS},
               "child_words": sum(len(c.split()) for c in child_turns) / len(child_turns)}
    rows = [{"child": c, "teacher": r, "cohesion": round(s, 6)} for c, r, s in zip(child_turns, replies, rewards)]
    return {k: round(v, 6) for k, v in summary.items()}, rows


def child_turns(model, tokenizer, windows: list[Window], *, batch_size: int, max_new_tokens: int, temperature: float,
                seed: int) -> list[str]:
    """The child's turn in each window; the same seed gives every policy the same sampling noise."""
    return generate_texts(model, tokenizer, [as_prompt(w.context) for w in windows], batch_size=batch_size,
                          max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)


def load_teacher(cfg: DialogueConfig, sft_dir: str, device) -> Teacher:
    """``dialogue.teacher``, or the main SFT policy when it is empty."""
    path, key = (cfg.teacher, "dialogue.teacher") if cfg.teacher else (sft_dir, None)
    tokenizer = load_tokenizer(path, key=key)
    model = load_causal_lm(path, tokenizer, key=key).to(device)
    return Teacher(model, tokenizer, temperature=cfg.teacher_temperature, max_new_tokens=cfg.teacher_max_new_tokens,
                   seed=cfg.seed)
