"""Readers of the ecosystem's chat formats: TRL/OpenAI ``messages`` and ShareGPT ``conversations``.

``messages``: ``{"messages": [{"role", "content"}, ...]}``, or the prompt-completion variant
``{"prompt": [...], "completion": [...]}`` (lists of messages, or two strings read as one user and
one assistant turn). Only the completion's assistant turns are trained on there, as in TRL.
``sharegpt``: ``{"conversations": [{"from", "value"}, ...]}`` with from human/gpt/system (or
user/assistant), or turns keyed ``role``/``content``; an optional top-level ``system`` string
(LLaMA-Factory) becomes the system message.

A turn's content is a string or a list of content parts; text parts are joined with newlines,
other parts (images, audio) are dropped and counted as ``non_text_content_part``. Speakers become
roles by ``data.chat_speakers``: role names (``roles``), or two speakers of any names mapped by who
speaks first (``first_is_user``) or by ``data.chat_assistant_speaker`` (``named``).

Rules, applied to each conversation in this order; a dropped one is counted by its reason:
  - a turn with empty text (after dropping non-text parts): dropped, ``empty_turn``;
  - a system message anywhere but first, or two consecutive turns of one role: dropped,
    ``roles_not_alternating`` (an assistant may speak first: its turn is then history only);
  - no assistant turn: dropped, ``no_assistant_turn``;
  - a last user turn that nothing answers stays in the dialogue but gives no SFT example or prompt;
    it is counted as ``unanswered_last_user_turn``.
Malformed input (a record without the conversation key, a non-list conversation, a turn without
content, an unknown role, a third speaker) is an error naming ``file:line`` (or record) and the key.
"""

from __future__ import annotations

from pathlib import Path

from rlhfpipe.config import DataConfig
from rlhfpipe.data.readers.base import Row, content_key, finish, load_rows, require
from rlhfpipe.data.schema import Dialogue, Records, Turn
from rlhfpipe.errors import PipelineError

ROLE_NAMES = {"system": "system", "user": "user", "human": "user", "prompter": "user",
              "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def _content_text(value, at: str, key: str, records: Records) -> str:
    """The text of a string or of a list of content parts; non-text parts are counted, not kept."""
    if isinstance(value, str):
        return value.strip()
    if not isinstance(value, list):
        raise PipelineError(f"{at}: key '{key}' must be str or a list of content parts, got {type(value).__name__}")
    texts = []
    for j, part in enumerate(value):
        where = f"{at}.{key}[{j}]"
        if isinstance(part, str):
            texts.append(part.strip())
        elif not isinstance(part, dict):
            raise PipelineError(f"{where}: expected a string or an object with 'type', got {type(part).__name__}")
        elif require(part, "type", str, where) == "text":
            texts.append(require(part, "text", str, where).strip())
        else:
            records.drop("non_text_content_part")
    return "\n".join(t for t in texts if t)


def _speaker_roles(speakers: list[tuple[str, str]], cfg: DataConfig) -> list[str]:
    """Roles for (speaker, where-of-its-key) pairs under data.chat_speakers."""
    if cfg.chat_speakers == "roles":
        roles = []
        for speaker, at in speakers:
            if speaker.lower() not in ROLE_NAMES:
                raise PipelineError(f"{at}: unknown role {speaker!r}; known: {', '.join(ROLE_NAMES)} "
                                    "(for speaker names set data.chat_speakers to first_is_user or named)")
            roles.append(ROLE_NAMES[speaker.lower()])
        return roles
    # two people talking: "system" keeps its meaning, anyone else is one of exactly two speakers
    people: list[str] = []
    for speaker, at in speakers:
        if speaker.lower() != "system" and speaker not in people:
            if len(people) == 2:
                raise PipelineError(f"{at}: a third speaker {speaker!r} after {people[0]!r} and {people[1]!r}; "
                                    f"data.chat_speakers={cfg.chat_speakers} maps exactly two speakers")
            people.append(speaker)
    if cfg.chat_speakers == "first_is_user":
        assistant = people[1] if len(people) == 2 else None
    else:
        assistant = cfg.chat_assistant_speaker.strip()
        if len(people) == 2 and assistant not in people:
            raise PipelineError(f"{speakers[0][1]}: data.chat_assistant_speaker={assistant!r} is neither of the two "
                                f"speakers {people[0]!r} and {people[1]!r}")
    return ["system" if s.lower() == "system" else "assistant" if s == assistant else "user" for s, _ in speakers]


def _turns(value, key: str, where: str, records: Records, cfg: DataConfig) -> list[Turn]:
    """Turns of one list of messages; ShareGPT's from/value and the role/content keys are both accepted."""
    if not isinstance(value, list):
        raise PipelineError(f"{where}: key '{key}' must be a list of messages, got {type(value).__name__}")
    speakers, texts = [], []
    for i, msg in enumerate(value):
        at = f"{where}: {key}[{i}]"
        if not isinstance(msg, dict):
            raise PipelineError(f"{at}: expected an object with 'role' and 'content', got {type(msg).__name__}")
        # a datasets column unifies both shapes, filling the absent keys with None
        speaker_key, text_key = ("from", "value") if msg.get("from") is not None else ("role", "content")
        if msg.get(speaker_key) is None:
            raise PipelineError(f"{at}: missing key 'role' (or 'from')")
        speaker = require(msg, speaker_key, (str, int), at)
        if msg.get(text_key) is None:
            raise PipelineError(f"{at}: " + (f"key '{text_key}' is null" if text_key in msg else f"missing key '{text_key}'"))
        speakers.append((str(speaker).strip(), f"{at}: key '{speaker_key}'"))
        texts.append(_content_text(msg[text_key], at, text_key, records))
    return [Turn(role, content) for role, content in zip(_speaker_roles(speakers, cfg), texts)]


def _drop_reason(turns: list[Turn]) -> str | None:
    if any(not t.content for t in turns):
        return "empty_turn"
    if any(t.role == "system" for t in turns[1:]):
        return "roles_not_alternating"
    body = turns[1:] if turns and turns[0].role == "system" else turns
    if any(a.role == b.role for a, b in zip(body, body[1:])):
        return "roles_not_alternating"
    if not any(t.role == "assistant" for t in body):
        return "no_assistant_turn"
    return None


def _keep(records: Records, row: Row, index: int, source: str, turns: list[Turn], completion_start: int = 0) -> None:
    reason = _drop_reason(turns)
    if reason:
        records.drop(reason)
        return
    if turns[-1].role == "user":
        records.drop("unanswered_last_user_turn")
    meta = {"completion_start": completion_start} if completion_start else {}
    did = f"{source}-{index}"
    # identical conversations share a split, so a duplicated record cannot leak from train into test
    group = content_key([[t.role, t.content] for t in turns])
    records.dialogues.append(Dialogue(did, turns, group_id=group, source=source, split=row.split, meta=meta))


def _no_key(row: Row, wanted: str) -> PipelineError:
    hint = {"messages": " (data.source=messages reads it)", "conversations": " (data.source=sharegpt reads it)"}
    other = next((k for k in hint if k in row.data), None)
    return PipelineError(f"{row.where}: missing key {wanted}" + (f"; found '{other}'{hint[other]}" if other else ""))


def read_messages(path: Path, cfg: DataConfig) -> Records:
    """TRL/OpenAI conversational records: ``messages``, or ``prompt`` + ``completion``."""
    records = Records()
    for index, row in enumerate(load_rows(path)):
        obj, where = row.data, row.where
        if "messages" in obj:
            _keep(records, row, index, "messages", _turns(obj["messages"], "messages", where, records, cfg))
        elif "prompt" in obj and "completion" in obj:
            prompt = require(obj, "prompt", (str, list), where)
            completion = require(obj, "completion", type(prompt), where)  # both strings or both message lists
            if isinstance(prompt, str):
                head, tail = [Turn("user", prompt.strip())], [Turn("assistant", completion.strip())]
            else:
                head = _turns(prompt, "prompt", where, records, cfg)
                tail = _turns(completion, "completion", where, records, cfg)
            _keep(records, row, index, "messages", head + tail, completion_start=len(head))
        else:
            raise _no_key(row, "'messages' (or 'prompt' and 'completion')")
    return finish(records, path)


def read_sharegpt(path: Path, cfg: DataConfig) -> Records:
    """ShareGPT records: ``conversations`` of from/value (or role/content) turns, optional ``system``."""
    records = Records()
    for index, row in enumerate(load_rows(path)):
        obj, where = row.data, row.where
        if "conversations" not in obj:
            raise _no_key(row, "'conversations'")
        turns = _turns(obj["conversations"], "conversations", where, records, cfg)
        if obj.get("system") is not None:
            system = require(obj, "system", str, where).strip()
            turns = [Turn("system", system), *turns] if system else turns
        _keep(records, row, index, "sharegpt", turns)
    return finish(records, path)
