"""What every format reader shares: rows from files, dataset directories and the hub; field checks.

A ``Row`` carries ``where`` (``file:line`` or ``name: record i``) so that any error about it names
the spot as one line. Local files are decoded one line at a time, so a bad byte is reported on its
own line rather than on the edge of a read buffer.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rlhfpipe.data.schema import SPLIT_NAMES, Dialogue, Records, Turn
from rlhfpipe.errors import PipelineError, first_line

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".txt", ".parquet", ".gz"}
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


@dataclass
class Row:
    where: str
    """``file:line`` or ``name: record i``, the prefix of every error about this row"""
    data: dict
    split: str | None = None
    """train/val/test when the row comes from a dataset that ships several splits"""


# --------------------------------------------------------------------------------------------------
# Local files
# --------------------------------------------------------------------------------------------------
def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, line with its ending) of a UTF-8 file, gunzipped when it ends in .gz."""
    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    lineno, has_text = 0, False
    try:
        with opener(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    reason = f"{err.reason} at byte {err.start} of the line"
                    raise PipelineError(f"{path}:{lineno}: not UTF-8 ({reason})") from None
                if lineno == 1:
                    line = line.removeprefix("\ufeff")
                has_text = has_text or bool(line.strip())
                yield lineno, line
    except (OSError, EOFError) as err:  # a corrupt or truncated .gz
        raise PipelineError(f"{path}:{lineno + 1}: cannot read ({first_line(err)})") from None
    if not has_text:
        raise PipelineError(f"{path}: file is empty")


def _json_object(text: str, where: str) -> dict:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise PipelineError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(obj, dict):
        raise PipelineError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line, with file:line on bad JSON or bytes."""
    for lineno, line in text_lines(path):
        if line.strip():
            yield lineno, _json_object(line, f"{path}:{lineno}")


def jsonl_rows(path: Path) -> Iterator[Row]:
    return (Row(f"{path}:{lineno}", obj) for lineno, obj in iter_jsonl(path))


def json_rows(path: Path) -> Iterator[Row]:
    """A .json file is either one array of objects or, as many hub files are, JSON lines."""
    lines = list(text_lines(path))
    if not next(line for _, line in lines if line.strip()).lstrip().startswith("["):
        for lineno, line in lines:
            if line.strip():
                yield Row(f"{path}:{lineno}", _json_object(line, f"{path}:{lineno}"))
        return
    try:
        data = json.loads("".join(line for _, line in lines))
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise PipelineError(f"{path}: record {i}: expected a JSON object, got {type(obj).__name__}")
        yield Row(f"{path}: record {i}", obj)


def csv_rows(path: Path) -> Iterator[Row]:
    """Rows of a quoted CSV file keyed by its header; a row with another field count is an error."""
    reader = csv.reader(line for _, line in text_lines(path))
    try:
        header = next(reader)
        start = reader.line_num + 1
        for fields in reader:
            where, start = f"{path}:{start}", reader.line_num + 1
            if not fields:
                continue
            if len(fields) != len(header):
                raise PipelineError(f"{where}: expected {len(header)} fields like the header, got {len(fields)}")
            yield Row(where, dict(zip(header, fields)))
    except csv.Error as err:
        raise PipelineError(f"{path}:{reader.line_num}: malformed CSV ({first_line(err)})") from None


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise PipelineError(f"{path}: file not found")
    for i, obj in enumerate(pq.read_table(path).to_pylist()):
        yield Row(f"{path}: record {i}", obj)


def data_suffix(path: Path) -> str:
    """The suffix that names the format, looking through a trailing .gz."""
    suffixes = path.suffixes
    return suffixes[-2] if len(suffixes) >= 2 and suffixes[-1] == ".gz" else path.suffix


# --------------------------------------------------------------------------------------------------
# Dataset directories and the hub
# --------------------------------------------------------------------------------------------------
def looks_like_hub_id(path: Path) -> bool:
    return not path.exists() and bool(HUB_ID.match(str(path))) and path.suffix not in DATA_SUFFIXES


def _hub_offline() -> bool:
    # read the environment now: datasets reads it once at import, perhaps before the caller set it
    import datasets

    env = (os.environ.get(k, "").upper() for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(v in TRUE_VALUES for v in env) or bool(datasets.config.HF_HUB_OFFLINE)


def _hub_cached(hub_id: str) -> bool:
    import datasets
    import huggingface_hub

    owner, name = hub_id.split("/")
    return (Path(datasets.config.HF_DATASETS_CACHE) / f"{owner}___{name}").exists() or (
        Path(huggingface_hub.constants.HF_HUB_CACHE) / f"datasets--{owner}--{name}").exists()


def _load_hub(hub_id: str):
    import datasets

    if _hub_offline() and not _hub_cached(hub_id):
        raise PipelineError(f"{hub_id}: no such local path, and as a hub dataset id it cannot be loaded offline "
                            "(HF_HUB_OFFLINE is set) as it is not in the local cache; load it once online")
    try:
        return datasets.load_dataset(hub_id)
    except Exception as err:  # datasets raises many unrelated types; each becomes one line here
        raise PipelineError(f"{hub_id}: no such local path, and as a hub dataset id: {first_line(err)}") from None


def _load_dir(path: Path):
    import datasets

    saved = (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
    try:
        return datasets.load_from_disk(str(path)) if saved else datasets.load_dataset(str(path))
    except Exception as err:  # as above: one line whatever datasets raised
        raise PipelineError(f"{path}: cannot load dataset directory ({first_line(err)})") from None


def dataset_rows(ds, name: str) -> Iterator[Row]:
    """Rows of a Dataset or DatasetDict; a split named train/validation/test is kept when there are several."""
    parts = list(ds.items()) if hasattr(ds, "items") else [(None, ds)]
    for split, part in parts:
        kept = SPLIT_NAMES.get(split) if len(parts) > 1 else None
        label = f"{name}[{split}]" if split else name
        for i, obj in enumerate(part):
            yield Row(f"{label}: record {i}", obj, kept)


def load_rows(path: Path, parse_csv=csv_rows) -> Iterator[Row]:
    """Rows of a local .jsonl/.json/.csv (optionally .gz) or .parquet file, a dataset directory, or a hub id."""
    if path.is_dir():
        return dataset_rows(_load_dir(path), str(path))
    if looks_like_hub_id(path):
        return dataset_rows(_load_hub(str(path)), str(path))
    suffix = data_suffix(path)
    parsers = {".jsonl": jsonl_rows, ".json": json_rows, ".csv": parse_csv, ".parquet": _parquet_rows}
    if suffix not in parsers:
        raise PipelineError(f"{path}: unsupported file type {suffix!r}; "
                            "expected .jsonl, .json, .csv (each optionally .gz) or .parquet")
    return parsers[suffix](path)


# --------------------------------------------------------------------------------------------------
# Field checks
# --------------------------------------------------------------------------------------------------
def require(obj: dict, key: str, kind: type | tuple, where: str):
    if key not in obj:
        raise PipelineError(f"{where}: missing key '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PipelineError(f"{where}: key '{key}' must be {names}, got {type(value).__name__}")
    return value


def text(obj: dict, key: str, where: str) -> str:
    """A required string field, stripped."""
    return require(obj, key, str, where).strip()


def optional_text(obj: dict, key: str, where: str) -> str:
    """A string field that may be absent or null (hub datasets fill gaps with None): "" then."""
    if obj.get(key) is None:
        return ""
    return text(obj, key, where)


def column_text(row: Row, column: str, key: str) -> str:
    """The text in ``column`` of a table row ("" when null); a missing column names the params ``key`` that chose it."""
    if column not in row.data:
        raise PipelineError(f"{row.where}: missing column '{column}' ({key}); columns: {', '.join(map(str, row.data))}")
    return optional_text(row.data, column, row.where)


def integer(obj: dict, key: str, where: str) -> int:
    """An integer field; CSV gives digits as text."""
    value = require(obj, key, (int, str), where)
    if isinstance(value, bool):
        raise PipelineError(f"{where}: key '{key}' must be an integer, got bool")
    if isinstance(value, str):
        if not value.strip().lstrip("-").isdigit():
            raise PipelineError(f"{where}: key '{key}' must be an integer, got {value!r}")
        return int(value)
    return value


def split_label(obj: dict, key: str, where: str) -> str:
    value = text(obj, key, where)
    if value.lower() not in SPLIT_NAMES:
        raise PipelineError(f"{where}: key '{key}' must be train, val or test, got {value!r}")
    return SPLIT_NAMES[value.lower()]


def messages(value, key: str, where: str) -> list[dict]:
    """A conversation as [{"role", "content"}] with schema roles and string contents."""
    if not isinstance(value, list):
        kind = type(value).__name__
        raise PipelineError(f"{where}: key '{key}' must be a list of {{role, content}} messages, got {kind}")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant"):
            raise PipelineError(f"{where}: {key}[{i}] must be an object with role system/user/assistant")
        if not isinstance(msg.get("content"), str):
            raise PipelineError(f"{where}: {key}[{i}].content must be str")
        out.append({"role": msg["role"], "content": msg["content"].strip()})
    return out


# --------------------------------------------------------------------------------------------------
# Building records
# --------------------------------------------------------------------------------------------------
def merge_turns(turns: Iterable[Turn], records: Records) -> list[Turn]:
    """Join consecutive turns of one role (chat templates need alternation); drop empty ones, counted.

    A merged turn keeps the first emotion and strategy label among its parts.
    """
    merged: list[Turn] = []
    for turn in turns:
        if not turn.content:
            records.drop("empty_turn")
        elif merged and merged[-1].role == turn.role:
            last = merged[-1]
            last.content = f"{last.content} {turn.content}"
            last.emotion = last.emotion or turn.emotion
            last.strategy = last.strategy or turn.strategy
        else:
            merged.append(turn)
    return merged


def content_key(obj) -> str:
    """A short stable hash, used as group_id so that records sharing a prompt share a split."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:12]


def finish(records: Records, path: Path) -> Records:
    """Refuse a result with nothing in it, saying why when everything was dropped."""
    if not (records.dialogues or records.pairs or records.prompts):
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(records.dropped.items()))
        raise PipelineError(f"{path}: no records" + (f" left after dropping {dropped}" if dropped else ""))
    return records


def keep_dialogue(records: Records, dialogue: Dialogue) -> None:
    """Add a dialogue unless nothing is left of it, which is counted instead."""
    if dialogue.turns:
        records.dialogues.append(dialogue)
    else:
        records.drop("empty_dialogue")
