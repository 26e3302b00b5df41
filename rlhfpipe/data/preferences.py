"""Preference pairs for the reward model, in TRL's conversational format with an explicit prompt.

Strategies (``preferences.strategy``):
- generated: chosen = the reference, rejected = a response sampled from a generator (default the
  SFT policy) whose ROUGE-L F against the reference is below ``rouge_threshold``.
- shuffled: rejected = the reference response of another dialogue.
- upvotes: counsel-chat style; the higher-voted answer to a question against a lower-voted one.
- native: the source already ships chosen/rejected (ORCA, HH-RLHF, TRL formats).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from itertools import combinations

import numpy as np

from rlhfpipe.config import PreferencesConfig
from rlhfpipe.data.prepare import split_of
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.metrics import rouge_l_pairwise


def pair(prompt: list[dict], chosen: str, rejected: str, group_id: str, source: str, rouge: float | None = None) -> dict:
    return {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "group_id": group_id,
        "source": source,
        "rouge_l": rouge,
    }


def rouge_filter(reference: str, samples: list[str], threshold: float) -> tuple[list[tuple[str, float]], Counter]:
    """Samples that differ enough from the reference to serve as rejected, and why others were dropped."""
    kept, dropped = [], Counter()
    for s in samples:
        if not s.strip():
            dropped["empty_response"] += 1
            continue
        r = rouge_l_pairwise(reference, s)
        if r >= threshold:
            dropped["rouge_at_or_above_threshold"] += 1
        else:
            kept.append((s, r))
    return kept, dropped


def select_prompts(rows: list[dict], cfg: PreferencesConfig) -> list[dict]:
    rows = [r for r in rows if r.get("reference")]
    rng = random.Random(cfg.seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    if cfg.max_prompts:
        order = sorted(order[: cfg.max_prompts])
    return [rows[i] for i in order]


def generated_pairs(rows: list[dict], samples: list[list[str]], cfg: PreferencesConfig) -> tuple[list[dict], Counter]:
    pairs, dropped = [], Counter()
    for row, row_samples in zip(rows, samples):
        kept, why = rouge_filter(row["reference"], row_samples, cfg.rouge_threshold)
        dropped.update(why)
        pairs += [pair(row["prompt"], row["reference"], s, row["group_id"], "generated", r) for s, r in kept]
    return pairs, dropped


def shuffled_pairs(rows: list[dict], cfg: PreferencesConfig) -> tuple[list[dict], Counter]:
    rng = random.Random(cfg.seed)
    donors = list(range(len(rows)))
    rng.shuffle(donors)
    pairs, dropped = [], Counter()
    for i, row in enumerate(rows):
        donor = rows[donors[i]]
        if donor["group_id"] == row["group_id"]:
            dropped["donor_from_same_dialogue"] += 1
            continue
        pairs.append(pair(row["prompt"], row["reference"], donor["reference"], row["group_id"], "shuffled"))
    return pairs, dropped


def upvote_pairs(dialogues: list[dict]) -> tuple[list[dict], Counter]:
    """Within each question, every pair of answers with different upvotes (ties dropped)."""
    by_question: dict[str, list[dict]] = {}
    for d in dialogues:
        if "upvotes" not in d.get("meta", {}):
            raise PipelineError(f"dialogue {d['dialogue_id']}: preferences.strategy=upvotes needs an 'upvotes' field (counsel-chat data)")
        by_question.setdefault(d["group_id"], []).append(d)
    pairs, dropped = [], Counter()
    for group_id, answers in sorted(by_question.items()):
        for a, b in combinations(answers, 2):
            ua, ub = int(a["meta"]["upvotes"]), int(b["meta"]["upvotes"])
            if ua == ub:
                dropped["upvote_tie"] += 1
                continue
            hi, lo = (a, b) if ua > ub else (b, a)
            prompt = [{"role": t["role"], "content": t["content"]} for t in hi["turns"] if t["role"] != "assistant"]
            pairs.append(pair(prompt, hi["turns"][-1]["content"], lo["turns"][-1]["content"], group_id, "upvotes"))
    return pairs, dropped


def native_pairs(rows: list[dict]) -> list[dict]:
    return [pair(r["prompt"], r["chosen"], r["rejected"], r["group_id"] or r["pair_id"], r["source"] or "native") for r in rows]


def prompt_key(prompt: list[dict]) -> str:
    return hashlib.sha256(repr([(m["role"], m["content"]) for m in prompt]).encode()).hexdigest()


def dedupe_and_split(pairs: list[dict], cfg: PreferencesConfig, dropped: Counter) -> dict[str, list[dict]]:
    """Drop exact duplicates and chosen == rejected; split by group; no prompt text in both splits."""
    seen, unique = set(), []
    for p in pairs:
        chosen, rejected = p["chosen"][0]["content"], p["rejected"][0]["content"]
        if chosen.strip() == rejected.strip():
            dropped["chosen_equals_rejected"] += 1
            continue
        key = (prompt_key(p["prompt"]), chosen, rejected)
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        unique.append(p)
    splits = {"train": [], "test": []}
    for p in unique:
        # Salted: prepare already split these ids with the same seed, and all of them landed in train.
        name = "test" if split_of(f"preferences:{p['group_id']}", cfg.seed, 0.0, cfg.test_fraction) == "test" else "train"
        splits[name].append(p)
    train_prompts = {prompt_key(p["prompt"]) for p in splits["train"]}
    test = [p for p in splits["test"] if prompt_key(p["prompt"]) not in train_prompts]
    dropped["test_prompt_also_in_train"] += len(splits["test"]) - len(test)
    splits["test"] = test
    return splits


def preference_metrics(splits: dict[str, list[dict]], dropped: Counter) -> dict:
    everything = splits["train"] + splits["test"]
    rouges = [p["rouge_l"] for p in everything if p["rouge_l"] is not None]
    words = lambda side: [len(p[side][0]["content"].split()) for p in everything]  # noqa: E731
    out = {
        "kept": {"train": len(splits["train"]), "test": len(splits["test"])},
        "dropped": {k: v for k, v in sorted(dropped.items()) if v},
        "by_source": dict(sorted(Counter(p["source"] for p in everything).items())),
        "chosen_words_mean": round(float(np.mean(words("chosen"))), 3) if everything else 0.0,
        "rejected_words_mean": round(float(np.mean(words("rejected"))), 3) if everything else 0.0,
        "chosen_longer_share": round(float(np.mean([a > b for a, b in zip(words("chosen"), words("rejected"))])), 4)
        if everything else 0.0,
    }
    if rouges:
        p10, p50, p90 = np.percentile(rouges, [10, 50, 90])
        out["rejected_rouge_l"] = {"mean": round(float(np.mean(rouges)), 4), "p10": round(float(p10), 4),
                                   "p50": round(float(p50), 4), "p90": round(float(p90), 4)}
    return out
