"""Switchboard (SWDA) transcripts: utterance rows rebuilt into turns, disfluency markup removed."""

from __future__ import annotations

import re
from pathlib import Path

from rlhfpipe.config import DataConfig
from rlhfpipe.data.readers.base import csv_rows, finish, merge_turns, text
from rlhfpipe.data.schema import Dialogue, Records, Turn
from rlhfpipe.errors import PipelineError

SWDA_CALLERS = {"A": "user", "B": "assistant"}
TAG = re.compile(r"<+[^<>]*>+")  # <laughter>, <<talking to child>>
FILLER = re.compile(r"\{F\s[^{}]*\}")  # {F uh, } goes entirely
LABELLED = re.compile(r"\{[DCEA]\s([^{}]*)\}")  # discourse markers, conjunctions, asides: keep the words
REPAIR = re.compile(r"\[([^\[\]]*)\+([^\[\]]*)\]")  # [ reparandum + repair ]: keep the repair
BRACKET = re.compile(r"\[([^\[\]+]*)\]")
UNCLOSED = re.compile(r"\{[FDCEA]\b")  # markup opened in one utterance and closed in the next
NOISE = re.compile(r"\(\(|\)\)|[/#{}\[\]+]")
DASH = re.compile(r"(?<!\S)-+(?!\S)")  # -- and the - of -/, not word fragments like "th-"
SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.?!;:])")


def clean_swda(utterance: str) -> str:
    """Plain words of an SWDA utterance; "" when nothing but markup and punctuation is left."""
    out = TAG.sub(" ", utterance)
    previous = None
    while out != previous:  # innermost first, until nested markup is gone
        previous = out
        out = BRACKET.sub(r"\1", REPAIR.sub(r"\2", LABELLED.sub(r"\1", FILLER.sub(" ", out))))
    out = DASH.sub(" ", NOISE.sub(" ", UNCLOSED.sub(" ", out)))
    out = SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(out.split())).lstrip(",.;: ")
    return out if any(ch.isalnum() for ch in out) else ""


def _csv_files(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    files = sorted(path.rglob("*.csv"))
    if not files:
        raise PipelineError(f"{path}: no *.csv files found (searched recursively)")
    return files


def read_switchboard(path: Path, cfg: DataConfig) -> Records:
    """SWDA CSV (a directory of one file per transcript, or one file), rows in transcript order.

    Caller A is the user, B the assistant. Dialogues whose cleaned word count lies outside
    [data.min_words, data.max_words] are dropped and counted.
    """
    records = Records()
    by_conv: dict[str, list[Turn]] = {}
    for file in _csv_files(path):
        for row in csv_rows(file):
            caller = text(row.data, "caller", row.where).upper()
            if caller not in SWDA_CALLERS:
                raise PipelineError(f"{row.where}: key 'caller' must be A or B, got {caller!r}")
            conv = text(row.data, "conversation_no", row.where)
            by_conv.setdefault(conv, []).append(Turn(SWDA_CALLERS[caller], clean_swda(text(row.data, "text", row.where))))
    for conv, turns in by_conv.items():
        turns = merge_turns(turns, records)
        words = sum(len(t.content.split()) for t in turns)
        if not cfg.min_words <= words <= cfg.max_words:
            records.drop("word_count_out_of_range")
            continue
        records.dialogues.append(Dialogue(f"sw{conv}", turns, group_id=f"sw{conv}", source="switchboard"))
    return finish(records, path)
