"""Readers for native dataset formats, each normalising into ``rlhfpipe.data.schema.Records``.

``read_records(source, path, cfg)`` is the one entry point. A reader raises ``PipelineError`` with
``<file>:<line>`` (or ``<file>: record <i>``) and the offending key on bad input; it never guesses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rlhfpipe.config import DataConfig
from rlhfpipe.data.schema import Dialogue, Records, Turn
from rlhfpipe.errors import PipelineError


def _open_text(path: Path):
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise PipelineError(f"{path}: file is empty")
    return path.open(encoding="utf-8", newline="")


def iter_jsonl(path: Path):
    """Yield (line number, object) for each non-blank line, with file:line on bad JSON or bytes."""
    with _open_text(path) as f:
        lineno = 0
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise PipelineError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
                    if not isinstance(obj, dict):
                        raise PipelineError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                    yield lineno, obj
        except UnicodeDecodeError as err:
            raise PipelineError(f"{path}:{lineno + 1}: not UTF-8 ({err.reason} at byte {err.start})") from None


def require(obj: dict, key: str, kind: type | tuple, where: str):
    if key not in obj:
        raise PipelineError(f"{where}: missing key '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PipelineError(f"{where}: key '{key}' must be {names}, got {type(value).__name__}")
    return value


def _text_list(obj: dict, key: str, where: str) -> str:
    value = require(obj, key, (list, str), where)
    if isinstance(value, str):
        return value.strip()
    for item in value:
        if not isinstance(item, str):
            raise PipelineError(f"{where}: key '{key}' must be a list of strings")
    return " ".join(s.strip() for s in value)


MULTIMOOD_ROLES = {"user": "user", "client": "user", "seeker": "user", "assistant": "assistant",
                   "therapist": "assistant", "supporter": "assistant", "system": "system"}


def read_multimood(path: Path, cfg: DataConfig) -> Records:
    """MultiMood / MESC JSONL: one line per therapist turn, its history in ``history_chat``.

    Lines of one dialogue are folded into one Dialogue: the longest history plus the last client
    message and therapist response; strategy and emotion labels are attached to their turns.
    """
    by_dialogue: dict[str, list[tuple[int, dict]]] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        did = require(obj, "Dialogue_ID", (str, int), where)
        response = _text_list(obj, "Utterance", where)
        user = _text_list(obj, "utt_user_most_recent", where)
        history = require(obj, "history_chat", list, where)
        turns = []
        for i, msg in enumerate(history):
            if not isinstance(msg, dict) or "content" not in msg or "role" not in msg:
                raise PipelineError(f"{where}: history_chat[{i}] must be an object with 'role' and 'content'")
            role = MULTIMOOD_ROLES.get(str(msg["role"]).lower())
            if role is None:
                raise PipelineError(f"{where}: history_chat[{i}].role {msg['role']!r} is not user/assistant/client/therapist")
            turns.append(Turn(role, str(msg["content"]).strip()))
        turns.append(Turn("user", user, emotion=obj.get("get_emotion_user_most_recent")))
        turns.append(Turn("assistant", response, emotion=obj.get("Emotion"), strategy=obj.get("Strategy")))
        by_dialogue.setdefault(str(did), []).append((lineno, {"turns": turns, "obj": obj}))

    records = Records()
    for did, lines in by_dialogue.items():
        _, last = max(lines, key=lambda item: len(item[1]["turns"]))
        turns = last["turns"]
        labels = {len(entry["turns"]) - 1: entry["turns"][-1] for _, entry in lines}
        labels.update({len(entry["turns"]) - 2: entry["turns"][-2] for _, entry in lines})
        turns = [labels.get(i, t) for i, t in enumerate(turns)]
        records.dialogues.append(Dialogue(
            dialogue_id=did, turns=turns, group_id=did, source="multimood",
            situation=str(last["obj"].get("situation") or ""), problem_type=str(last["obj"].get("problem_type") or ""),
        ))
    if not records.dialogues:
        raise PipelineError(f"{path}: no records")
    return records


READERS: dict[str, Callable[[Path, DataConfig], Records]] = {
    "multimood": read_multimood,
}


def read_records(source: str, path: str, cfg: DataConfig) -> Records:
    if source not in READERS:
        raise PipelineError(f"params.yaml: data.source={source!r}: no reader; known: {', '.join(sorted(READERS))}")
    return READERS[source](Path(path), cfg)
