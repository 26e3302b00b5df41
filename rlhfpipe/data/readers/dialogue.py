"""Readers of dialogue corpora: MultiMood/MESC, ESConv, EmpatheticDialogues, counsel-chat and kin.

Each returns ``Records.dialogues``; labels (emotion, strategy) stay on the turn that carries them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Iterator

from rlhfpipe.config import DataConfig
from rlhfpipe.data.readers.base import (
    Row, content_key, data_suffix, finish, integer, keep_dialogue, load_rows, merge_turns, optional_text,
    require, split_label, text, text_lines,
)
from rlhfpipe.data.schema import Dialogue, Records, Turn
from rlhfpipe.errors import PipelineError


# --------------------------------------------------------------------------------------------------
# MultiMood / MESC
# --------------------------------------------------------------------------------------------------
MULTIMOOD_ROLES = {"user": "user", "client": "user", "seeker": "user", "assistant": "assistant",
                   "therapist": "assistant", "supporter": "assistant", "system": "system"}


def _text_list(obj: dict, key: str, where: str) -> str:
    value = require(obj, key, (list, str), where)
    if isinstance(value, str):
        return value.strip()
    for item in value:
        if not isinstance(item, str):
            raise PipelineError(f"{where}: key '{key}' must be a list of strings")
    return " ".join(s.strip() for s in value)


def _multimood_turns(obj: dict, where: str) -> list[Turn]:
    """History, then the client's latest message, then the labelled therapist response."""
    response = _text_list(obj, "Utterance", where)
    user = _text_list(obj, "utt_user_most_recent", where)
    turns = []
    for i, msg in enumerate(require(obj, "history_chat", list, where)):
        if not isinstance(msg, dict) or "content" not in msg or "role" not in msg:
            raise PipelineError(f"{where}: history_chat[{i}] must be an object with 'role' and 'content'")
        role = MULTIMOOD_ROLES.get(str(msg["role"]).lower())
        if role is None:
            raise PipelineError(f"{where}: history_chat[{i}].role {msg['role']!r} is not user/assistant/client/therapist")
        turns.append(Turn(role, str(msg["content"]).strip()))
    turns.append(Turn("user", user, emotion=obj.get("get_emotion_user_most_recent")))
    turns.append(Turn("assistant", response, emotion=obj.get("Emotion"), strategy=obj.get("Strategy")))
    return turns


def read_multimood(path: Path, cfg: DataConfig) -> Records:
    """MultiMood / MESC JSONL: one line per therapist turn, its history in ``history_chat``.

    Lines of one dialogue are folded into one Dialogue: the longest history plus the last client
    message and therapist response; strategy and emotion labels are attached to their turns.
    Video keys (``path_to_vid_user_most_recent``, ...) are ignored.
    """
    by_dialogue: dict[str, list[tuple[list[Turn], Row]]] = {}
    for row in load_rows(path):
        did = require(row.data, "Dialogue_ID", (str, int), row.where)
        by_dialogue.setdefault(str(did), []).append((_multimood_turns(row.data, row.where), row))

    records = Records()
    for did, lines in by_dialogue.items():
        turns, last = max(lines, key=lambda item: len(item[0]))
        # each line labels its own last two turns; the longest history carries none of them
        labels = {len(line_turns) - 1: line_turns[-1] for line_turns, _ in lines}
        labels.update({len(line_turns) - 2: line_turns[-2] for line_turns, _ in lines})
        records.dialogues.append(Dialogue(
            dialogue_id=did, turns=[labels.get(i, t) for i, t in enumerate(turns)], group_id=did,
            source="multimood", situation=str(last.data.get("situation") or ""),
            problem_type=str(last.data.get("problem_type") or ""), split=last.split,
        ))
    return finish(records, path)


MESC_SPEAKERS = {"client": "user", "therapist": "assistant"}


def read_mesc_csv(path: Path, cfg: DataConfig) -> Records:
    """Raw MESC CSV, one row per utterance in dialogue order; a speaker's consecutive rows make one turn."""
    records = Records()
    dialogues: dict[str, Dialogue] = {}
    for row in load_rows(path):
        obj, where = row.data, row.where
        speaker = text(obj, "Speaker", where)
        if speaker.lower() not in MESC_SPEAKERS:
            raise PipelineError(f"{where}: key 'Speaker' must be Client or Therapist, got {speaker!r}")
        strategy = text(obj, "Strategy", where)
        did = str(require(obj, "Dialogue_ID", (str, int), where))
        dialogue = dialogues.setdefault(did, Dialogue(did, [], group_id=did, source="mesc_csv", split=row.split))
        dialogue.turns.append(Turn(
            MESC_SPEAKERS[speaker.lower()], text(obj, "Utterance", where), emotion=text(obj, "Emotion", where) or None,
            strategy=None if strategy.lower() in ("", "undefined") else strategy,  # "undefined" marks client rows
        ))
    for dialogue in dialogues.values():
        dialogue.turns = merge_turns(dialogue.turns, records)
        keep_dialogue(records, dialogue)
    return finish(records, path)


# --------------------------------------------------------------------------------------------------
# ESConv
# --------------------------------------------------------------------------------------------------
ESCONV_SPEAKERS = {"seeker": "user", "usr": "user", "speaker": "user",
                   "supporter": "assistant", "sys": "assistant", "listener": "assistant"}
ESCONV_STRATEGIES = ("Question", "Restatement or Paraphrasing", "Reflection of feelings", "Self-disclosure",
                     "Affirmation and Reassurance", "Providing Suggestions", "Information", "Others")


def _label_key(label: str) -> str:
    """Case, hyphens, ampersands and spacing do not distinguish labels."""
    return " ".join(re.sub(r"[^a-z]+", " ", label.lower().replace("&", "and")).split())


# Variants seen in ESConv releases and their derivatives (bracketed "[Question]" in the model-ready
# text files, plurals, "&", capitalisation) and the synonyms people write for the eight strategies.
STRATEGY_LABELS = {_label_key(s): s for s in ESCONV_STRATEGIES} | {
    _label_key(variant): canonical for variant, canonical in [
        ("Questions", "Question"), ("Asking Questions", "Question"), ("Open question", "Question"),
        ("Closed question", "Question"), ("Question asking", "Question"),
        ("Restatement and Paraphrasing", "Restatement or Paraphrasing"), ("Restatement", "Restatement or Paraphrasing"),
        ("Paraphrasing", "Restatement or Paraphrasing"), ("Paraphrase", "Restatement or Paraphrasing"),
        ("Reflection of feeling", "Reflection of feelings"), ("Reflection", "Reflection of feelings"),
        ("Reflecting feelings", "Reflection of feelings"), ("Emotional reflection", "Reflection of feelings"),
        ("Self disclosure", "Self-disclosure"), ("Self-disclosures", "Self-disclosure"),
        ("Affirmation", "Affirmation and Reassurance"), ("Reassurance", "Affirmation and Reassurance"),
        ("Affirmations and Reassurances", "Affirmation and Reassurance"),
        ("Providing Suggestion", "Providing Suggestions"), ("Suggestions", "Providing Suggestions"),
        ("Suggestion", "Providing Suggestions"), ("Giving Suggestions", "Providing Suggestions"),
        ("Give suggestions", "Providing Suggestions"), ("Advice", "Providing Suggestions"),
        ("Providing Information", "Information"), ("Information Providing", "Information"),
        ("Provide Information", "Information"), ("Informing", "Information"),
        ("Other", "Others"), ("Greeting", "Others"),
    ]
}


def _esconv_strategy(msg: dict, where: str, records: Records) -> str | None:
    """The JSON release nests the label in ``annotation`` (with feedback scores); the JSONL one has it flat.

    An unknown label becomes "Others" and is counted: one odd label should not cost a whole release.
    """
    if "annotation" in msg:
        holder = require(msg, "annotation", dict, where)
        where = f"{where}.annotation"
    else:
        holder = msg
    if holder.get("strategy") is None:
        return None
    label = text(holder, "strategy", where)
    if _label_key(label) not in STRATEGY_LABELS:
        records.unknown_labels[label] = records.unknown_labels.get(label, 0) + 1
        return "Others"
    return STRATEGY_LABELS[_label_key(label)]


def _esconv_dialogue(row: Row, index: int, source: str, records: Records) -> Dialogue:
    obj, where = row.data, row.where
    emotion = optional_text(obj, "emotion_type", where) or None
    turns = []
    for j, msg in enumerate(require(obj, "dialog", list, where)):
        at = f"{where}: dialog[{j}]"
        if not isinstance(msg, dict):
            raise PipelineError(f"{at}: expected an object with 'speaker' and 'content'")
        speaker = text(msg, "speaker", at)
        if speaker.lower() not in ESCONV_SPEAKERS:
            raise PipelineError(f"{at}: key 'speaker' must be one of {', '.join(ESCONV_SPEAKERS)}, got {speaker!r}")
        role = ESCONV_SPEAKERS[speaker.lower()]
        strategy = _esconv_strategy(msg, at, records)
        turns.append(Turn(role, text(msg, "content" if "content" in msg else "text", at),
                          emotion=emotion if role == "user" else None, strategy=strategy if role == "assistant" else None))
    did = f"{source}-{index}"
    return Dialogue(
        did, merge_turns(turns, records), group_id=did, situation=optional_text(obj, "situation", where),
        problem_type=optional_text(obj, "problem_type", where), source=source, split=row.split,
        meta={k: obj[k] for k in ("emotion_type", "experience_type", "survey_score") if obj.get(k) is not None},
    )


def _read_esconv(path: Path, source: str) -> Records:
    records = Records()
    for index, row in enumerate(load_rows(path)):
        keep_dialogue(records, _esconv_dialogue(row, index, source, records))
    if records.unknown_labels:
        found = ", ".join(f"{label!r} x{n}" for label, n in sorted(records.unknown_labels.items()))
        print(f"warning: {path}: strategy labels outside the eight mapped to 'Others': {found}", file=sys.stderr)
    return finish(records, path)


def read_esconv(path: Path, cfg: DataConfig) -> Records:
    """ESConv.json: an array of dialogues, ``dialog`` turns {speaker, annotation, content}.

    Speakers seeker/supporter (or usr/sys, speaker/listener); seeker feedback scores are ignored,
    their utterances kept. Strategy labels are mapped onto the eight canonical ones.
    """
    return _read_esconv(path, "esconv")


def read_esconv_jsonl(path: Path, cfg: DataConfig) -> Records:
    """ESConv as JSON lines, ``dialog`` turns {text, speaker: usr|sys, strategy}."""
    return _read_esconv(path, "esconv_jsonl")


# --------------------------------------------------------------------------------------------------
# EmpatheticDialogues
# --------------------------------------------------------------------------------------------------
ED_FIELDS = ("conv_id", "utterance_idx", "context", "prompt", "speaker_idx", "utterance", "selfeval", "tags")


def _ed_csv_rows(path: Path) -> Iterator[Row]:
    """ED's CSV has no quoting (commas are written ``_comma_``); fields past the eighth are ignored."""
    lines = text_lines(path)
    _, header = next(lines)
    if tuple(header.strip().split(",")[:len(ED_FIELDS)]) != ED_FIELDS:
        raise PipelineError(f"{path}:1: header must start with {','.join(ED_FIELDS)}")
    for lineno, line in lines:
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split(",")
        if len(fields) < len(ED_FIELDS):
            raise PipelineError(f"{path}:{lineno}: expected at least {len(ED_FIELDS)} fields "
                                f"({','.join(ED_FIELDS)}), got {len(fields)}")
        yield Row(f"{path}:{lineno}", dict(zip(ED_FIELDS, fields)))


def _ed_text(obj: dict, key: str, where: str) -> str:
    return text(obj, key, where).replace("_comma_", ",")


def read_empathetic_dialogues(path: Path, cfg: DataConfig) -> Records:
    """EmpatheticDialogues CSV, one row per utterance: the first speaker is the user, the other the assistant.

    ``context`` (the emotion) labels the user's turns; ``prompt`` is the situation.
    """
    records = Records()
    by_conv: dict[str, list[tuple[int, Row]]] = {}
    for row in load_rows(path, parse_csv=_ed_csv_rows):
        conv = str(require(row.data, "conv_id", (str, int), row.where))
        by_conv.setdefault(conv, []).append((integer(row.data, "utterance_idx", row.where), row))
    for conv, rows in by_conv.items():
        rows.sort(key=lambda item: item[0])
        first = rows[0][1]
        emotion = text(first.data, "context", first.where)
        opener = str(require(first.data, "speaker_idx", (str, int), first.where))
        turns = [Turn("user", _ed_text(r.data, "utterance", r.where), emotion=emotion)
                 if str(require(r.data, "speaker_idx", (str, int), r.where)) == opener
                 else Turn("assistant", _ed_text(r.data, "utterance", r.where)) for _, r in rows]
        keep_dialogue(records, Dialogue(
            conv, merge_turns(turns, records), group_id=conv, situation=_ed_text(first.data, "prompt", first.where),
            source="empathetic_dialogues", split=first.split, meta={"emotion": emotion},
        ))
    return finish(records, path)


# --------------------------------------------------------------------------------------------------
# Question / answer corpora
# --------------------------------------------------------------------------------------------------
def read_counsel_chat(path: Path, cfg: DataConfig) -> Records:
    """counsel-chat: one Dialogue per answer, grouped by question so its answers share a split."""
    records = Records()
    for index, row in enumerate(load_rows(path)):
        obj, where = row.data, row.where
        qid = str(require(obj, "questionID", (str, int), where))
        question = "\n".join(p for p in (text(obj, "questionTitle", where), optional_text(obj, "questionText", where)) if p)
        answer = text(obj, "answerText", where)
        meta = {"upvotes": integer(obj, "upvotes", where), "topic": optional_text(obj, "topic", where)}
        if not answer:
            records.drop("empty_answer")
            continue
        # the CSV ships its own split column; the hub copy may carry the split as a dataset split instead
        split = split_label(obj, "split", where) if obj.get("split") else row.split
        records.dialogues.append(Dialogue(
            f"counsel-{index}", [Turn("user", question), Turn("assistant", answer)], group_id=qid,
            source="counsel_chat", split=split, meta=meta,
        ))
    return finish(records, path)


def read_context_response(path: Path, cfg: DataConfig) -> Records:
    """``Context`` / ``Response`` records (Amod/mental_health_counseling_conversations), grouped by context."""
    records = Records()
    for index, row in enumerate(load_rows(path)):
        context, response = text(row.data, "Context", row.where), text(row.data, "Response", row.where)
        if not (context and response):
            records.drop("empty_text")
            continue
        records.dialogues.append(Dialogue(
            f"context_response-{index}", [Turn("user", context), Turn("assistant", response)],
            group_id=content_key(context), source="context_response", split=row.split,
        ))
    return finish(records, path)


HA_TAG = re.compile(r"<(HUMAN|ASSISTANT)>:", re.IGNORECASE)


def _blank_line_blocks(path: Path) -> Iterator[Row]:
    """Records of a .txt file are separated by blank lines; each is located at its first line."""
    block: list[str] = []
    start = 0
    for lineno, line in text_lines(path):
        if line.strip():
            start = start if block else lineno
            block.append(line)
        elif block:
            yield Row(f"{path}:{start}", {"text": "".join(block)})
            block = []
    if block:
        yield Row(f"{path}:{start}", {"text": "".join(block)})


def _tagged_turns(body: str, where: str) -> list[Turn]:
    parts = HA_TAG.split(body)
    if parts[0].strip() or len(parts) == 1:
        raise PipelineError(f"{where}: key 'text' must start with <HUMAN>: or <ASSISTANT>:, got {body[:40]!r}")
    return [Turn("user" if tag.upper() == "HUMAN" else "assistant", content.strip())
            for tag, content in zip(parts[1::2], parts[2::2])]


def read_human_assistant(path: Path, cfg: DataConfig) -> Records:
    """One ``text`` field ``<HUMAN>: ...\\n<ASSISTANT>: ...`` per record (JSONL etc., or blank-line separated .txt)."""
    records = Records()
    rows = _blank_line_blocks(path) if data_suffix(path) == ".txt" else load_rows(path)
    for index, row in enumerate(rows):
        turns = merge_turns(_tagged_turns(text(row.data, "text", row.where), row.where), records)
        keep_dialogue(records, Dialogue(
            f"human_assistant-{index}", turns, group_id=content_key(turns[0].content if turns else ""),
            source="human_assistant", split=row.split,
        ))
    return finish(records, path)
