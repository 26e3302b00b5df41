"""Readers of preference pairs (ORCA DPO, HH-RLHF, TRL) and of prompt-only data (CSV, TRL).

A pair's prompt is a list of {role, content} messages and chosen/rejected are the final assistant
responses. Every pair also yields a Dialogue (prompt + chosen) so that SFT can train on it; both
share a group_id hashed from the prompt, so pairs on one prompt never straddle a split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rlhfpipe.config import DataConfig
from rlhfpipe.data.readers.base import column_text, content_key, finish, load_rows, messages, optional_text, require, text
from rlhfpipe.data.schema import Dialogue, PreferencePair, Records, Turn
from rlhfpipe.errors import PipelineError


def _add_pair(records: Records, pair_id: str, source: str, prompt: list[dict], chosen: str, rejected: str,
              split: str | None) -> None:
    # a pair without two distinct, non-empty responses teaches a reward model nothing
    if not (chosen and rejected):
        records.drop("empty_response")
        return
    if chosen == rejected:
        records.drop("chosen_equals_rejected")
        return
    group = content_key(prompt)
    records.pairs.append(PreferencePair(pair_id, prompt, chosen, rejected, group_id=group, source=source, split=split))
    turns = [Turn(m["role"], m["content"]) for m in prompt] + [Turn("assistant", chosen)]
    records.dialogues.append(Dialogue(pair_id, turns, group_id=group, source=source, split=split))


def read_orca_dpo(path: Path, cfg: DataConfig) -> Records:
    """Intel ORCA DPO pairs: ``system``, ``question``, ``chosen``, ``rejected``.

    Older files name the responses ``chatgpt`` (chosen) and ``llama2-13b-chat`` (rejected).
    """
    records = Records()
    for index, row in enumerate(load_rows(path)):
        obj, where = row.data, row.where
        old = "chosen" not in obj and "chatgpt" in obj
        chosen_key, rejected_key = ("chatgpt", "llama2-13b-chat") if old else ("chosen", "rejected")
        system = optional_text(obj, "system", where)
        prompt = [{"role": "system", "content": system}] if system else []
        prompt.append({"role": "user", "content": text(obj, "question", where)})
        _add_pair(records, f"orca_dpo-{index}", "orca_dpo", prompt, text(obj, chosen_key, where),
                  text(obj, rejected_key, where), row.split)
    return finish(records, path)


HH_TAG = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def _hh_messages(obj: dict, key: str, where: str) -> list[dict]:
    parts = HH_TAG.split(require(obj, key, str, where))
    if parts[0].strip() or len(parts) == 1:
        raise PipelineError(f"{where}: key '{key}' must be a transcript of '\\n\\nHuman: ...\\n\\nAssistant: ...' turns")
    msgs = [{"role": "user" if tag == "Human" else "assistant", "content": content.strip()}
            for tag, content in zip(parts[1::2], parts[2::2])]
    if msgs[-1]["role"] != "assistant":
        raise PipelineError(f"{where}: key '{key}' must end with an Assistant turn")
    return msgs


def read_hh_rlhf(path: Path, cfg: DataConfig) -> Records:
    """Anthropic HH-RLHF: ``chosen`` and ``rejected`` are whole transcripts differing in the last Assistant turn.

    A pair whose transcripts differ earlier too has no single prompt; it is dropped and counted.
    """
    records = Records()
    for index, row in enumerate(load_rows(path)):
        chosen, rejected = _hh_messages(row.data, "chosen", row.where), _hh_messages(row.data, "rejected", row.where)
        if chosen[:-1] != rejected[:-1]:
            records.drop("prompt_mismatch")
            continue
        _add_pair(records, f"hh_rlhf-{index}", "hh_rlhf", chosen[:-1], chosen[-1]["content"],
                  rejected[-1]["content"], row.split)
    return finish(records, path)


def _split_shared_text(chosen: str, rejected: str, where: str) -> tuple[list[dict], str, str]:
    """TRL's implicit prompt for plain text: the shared leading words."""
    shared = os.path.commonprefix([chosen, rejected])
    cut = len(shared) if shared[-1:].isspace() else shared.rfind(" ") + 1
    if not shared[:cut].strip():
        raise PipelineError(f"{where}: missing key 'prompt', and 'chosen'/'rejected' share no leading words to take as one")
    return [{"role": "user", "content": shared[:cut].strip()}], chosen[cut:].strip(), rejected[cut:].strip()


def _split_shared_messages(full_chosen: list[dict], full_rejected: list[dict], where: str) -> tuple[list[dict], str, str]:
    """The prompt is the shared leading messages; each side must then add exactly one assistant message."""
    n = 0
    while n < min(len(full_chosen), len(full_rejected)) - 1 and full_chosen[n] == full_rejected[n]:
        n += 1
    for key, full in (("chosen", full_chosen), ("rejected", full_rejected)):
        if len(full) != n + 1 or full[-1]["role"] != "assistant":
            raise PipelineError(f"{where}: key '{key}' must end in one assistant message after the prompt "
                                "shared with the other")
    return full_chosen[:n], full_chosen[-1]["content"], full_rejected[-1]["content"]


def _trl_pair(obj: dict, where: str) -> tuple[list[dict], str, str]:
    chosen = require(obj, "chosen", (str, list), where)
    rejected = require(obj, "rejected", type(chosen), where)  # both standard (str) or both conversational
    if isinstance(chosen, str):
        if obj.get("prompt") is None:
            return _split_shared_text(chosen, rejected, where)
        return [{"role": "user", "content": text(obj, "prompt", where)}], chosen.strip(), rejected.strip()
    head = [] if obj.get("prompt") is None else messages(obj["prompt"], "prompt", where)
    chosen, rejected = messages(chosen, "chosen", where), messages(rejected, "rejected", where)
    return _split_shared_messages(head + chosen, head + rejected, where)


def read_trl_preference(path: Path, cfg: DataConfig) -> Records:
    """TRL preference data, standard (strings) or conversational (messages), explicit or implicit prompt.

    Columns other than prompt/chosen/rejected are ignored.
    """
    records = Records()
    for index, row in enumerate(load_rows(path)):
        prompt, chosen, rejected = _trl_pair(row.data, row.where)
        _add_pair(records, f"trl_preference-{index}", "trl_preference", prompt, chosen, rejected, row.split)
    return finish(records, path)


def _add_prompt(records: Records, prompt: list[dict]) -> None:
    if prompt and prompt[-1]["content"]:
        records.prompts.append(prompt)
    else:
        records.drop("empty_prompt")


def read_prompt_csv(path: Path, cfg: DataConfig) -> Records:
    """A CSV (or any table) whose column ``data.prompt_column`` holds one user prompt per row."""
    records = Records()
    for row in load_rows(path):
        _add_prompt(records, [{"role": "user", "content": column_text(row, cfg.prompt_column, "data.prompt_column")}])
    return finish(records, path)


def read_trl_prompt(path: Path, cfg: DataConfig) -> Records:
    """TRL prompt-only data: ``prompt`` is a string or a list of messages ending with the user's."""
    records = Records()
    for row in load_rows(path):
        value = require(row.data, "prompt", (str, list), row.where)
        if isinstance(value, str):
            prompt = [{"role": "user", "content": value.strip()}]
        else:
            prompt = messages(value, "prompt", row.where)
        if prompt and prompt[-1]["role"] != "user":
            raise PipelineError(f"{row.where}: key 'prompt' must end with a user message, got {prompt[-1]['role']}")
        _add_prompt(records, prompt)
    return finish(records, path)
