"""Normalised records -> deterministic splits, chat-format SFT examples, prompt sets, native pairs."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from rlhfpipe.config import DataConfig
from rlhfpipe.data.schema import SPLIT_NAMES, SPLITS, Dialogue, Records, context_window



def split_of(group_id: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Hash-based split: stable across runs and machines, and a group never straddles two splits."""
    digest = hashlib.sha256(f"{seed}:{group_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + val_fraction else "train"


def assign_split(group_id: str, native: str | None, cfg: DataConfig) -> str:
    if native is not None and native.lower() in SPLIT_NAMES:
        return SPLIT_NAMES[native.lower()]
    return split_of(group_id, cfg.seed, cfg.val_fraction, cfg.test_fraction)


def sft_examples(dialogue: Dialogue, cfg: DataConfig) -> list[dict]:
    """One example per assistant turn that answers a user turn: recent history -> that response.

    A leading system message is kept when the history is cut. Turns before ``meta["completion_start"]``
    (prompt-completion data) are context only.
    """
    out = []
    first = dialogue.meta.get("completion_start", 0)
    for i, turn in enumerate(dialogue.turns):
        if turn.role != "assistant" or i == 0 or i < first or dialogue.turns[i - 1].role != "user" or not turn.content:
            continue
        context = context_window(dialogue.turns, i, cfg.max_history_messages + 1)
        if dialogue.turns[0].role == "system" and context[0] is not dialogue.turns[0]:
            context = [dialogue.turns[0], *context]
        prompt = [{"role": t.role, "content": t.content} for t in context]
        target = turn.content
        if cfg.structured_target:
            target = (
                f"Client's emotion: {dialogue.turns[i - 1].emotion or 'neutral'} / Therapist's emotion: "
                f"{turn.emotion or 'neutral'} / Therapist's strategy: {turn.strategy or 'Others'} / "
                f"Therapist's response: {turn.content}"
            )
        out.append({
            "id": f"{dialogue.dialogue_id}:{i}",
            "group_id": dialogue.group_id or dialogue.dialogue_id,
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": target}],
            "reference": turn.content,
            "emotion": dialogue.turns[i - 1].emotion,
            "strategy": turn.strategy,
        })
    return out


def percentiles(values: list[int]) -> dict:
    if not values:
        return {"p10": 0, "p50": 0, "p90": 0, "max": 0}
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"p10": float(p10), "p50": float(p50), "p90": float(p90), "max": int(max(values))}


def prepare(records: Records, cfg: DataConfig) -> tuple[dict[str, list[dict]], dict]:
    """Return the prepared files (name -> rows) and the data metrics."""
    files: dict[str, list[dict]] = {f"{kind}_{s}": [] for kind in ("sft", "prompts", "dialogues", "pairs") for s in SPLITS}
    dropped = Counter(records.dropped)
    for d in records.dialogues:
        split = assign_split(d.group_id or d.dialogue_id, d.split, cfg)
        examples = sft_examples(d, cfg)
        if not examples:
            dropped["no_answered_user_turn"] += 1
            continue
        files[f"dialogues_{split}"].append({**d.to_json(), "split": split})
        files[f"sft_{split}"] += examples
        files[f"prompts_{split}"] += [
            {"id": e["id"], "group_id": e["group_id"], "prompt": e["prompt"], "reference": e["reference"]} for e in examples
        ]
    for i, prompt in enumerate(records.prompts):
        split = assign_split(f"prompt-{i}", None, cfg)
        files[f"prompts_{split}"].append({"id": f"prompt-{i}", "group_id": f"prompt-{i}", "prompt": prompt, "reference": None})
    for pair in records.pairs:
        if pair.chosen == pair.rejected:
            dropped["pair_chosen_equals_rejected"] += 1
            continue
        split = assign_split(pair.group_id or pair.pair_id, pair.split, cfg)
        files[f"pairs_{split}"].append({**pair.to_json(), "split": split})

    metrics = {
        "counts": {
            f"{kind}_{s}": len(files[f"{kind}_{s}"]) for kind in ("dialogues", "sft", "prompts", "pairs") for s in SPLITS
        },
        "dropped": dict(sorted(dropped.items())),
        "labels": {
            "client_emotion": dict(sorted(Counter(e["emotion"] for s in SPLITS for e in files[f"sft_{s}"] if e["emotion"]).items())),
            "strategy": dict(sorted(Counter(e["strategy"] for s in SPLITS for e in files[f"sft_{s}"] if e["strategy"]).items())),
        },
        **({"unknown_labels": dict(sorted(records.unknown_labels.items()))} if records.unknown_labels else {}),
        "words": {
            "prompt": percentiles([sum(len(m["content"].split()) for m in e["prompt"]) for e in files["sft_train"]]),
            "response": percentiles([len(e["reference"].split()) for e in files["sft_train"]]),
        },
    }
    return files, metrics


def check_disjoint(files: dict[str, list[dict]]) -> None:
    """No group id in two splits: the guarantee evaluation relies on."""
    seen: dict[str, str] = {}
    for s in SPLITS:
        for row in files[f"sft_{s}"] + files[f"pairs_{s}"]:
            g = row["group_id"]
            if seen.setdefault(g, s) != s:
                raise AssertionError(f"group {g!r} is in both {seen[g]} and {s}")
