"""Readers for native dataset formats, each normalising into ``rlhfpipe.data.schema.Records``.

``read_records(source, path, cfg)`` is the one entry point; ``READERS`` maps every name in
``data.source`` to its reader ``(path, cfg) -> Records``. A reader raises ``PipelineError``
with ``<file>:<line>`` (or ``<name>: record <i>``) and the offending key on bad input; it never
guesses. Records skipped on purpose are counted in ``Records.dropped``.

``path`` is a local file (.jsonl/.json/.csv, optionally .gz, or .parquet), a local directory (saved with
``Dataset.save_to_disk``, or of data files) or, for tabular/JSON formats, a hub dataset id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rlhfpipe.config import DataConfig
from rlhfpipe.data.readers.base import iter_jsonl, load_rows, require
from rlhfpipe.data.readers.chat import read_messages, read_sharegpt
from rlhfpipe.data.readers.dialogue import (
    read_context_response, read_counsel_chat, read_empathetic_dialogues, read_esconv, read_esconv_jsonl,
    read_human_assistant, read_mesc_csv, read_multimood,
)
from rlhfpipe.data.readers.preference import (
    read_hh_rlhf, read_orca_dpo, read_prompt_csv, read_trl_preference, read_trl_prompt,
)
from rlhfpipe.data.readers.switchboard import read_switchboard
from rlhfpipe.data.schema import Records
from rlhfpipe.errors import PipelineError

__all__ = ["READERS", "iter_jsonl", "load_rows", "read_multimood", "read_records", "require"]

READERS: dict[str, Callable[[Path, DataConfig], Records]] = {
    "multimood": read_multimood,
    "mesc_csv": read_mesc_csv,
    "esconv": read_esconv,
    "esconv_jsonl": read_esconv_jsonl,
    "empathetic_dialogues": read_empathetic_dialogues,
    "counsel_chat": read_counsel_chat,
    "context_response": read_context_response,
    "human_assistant": read_human_assistant,
    "orca_dpo": read_orca_dpo,
    "hh_rlhf": read_hh_rlhf,
    "trl_preference": read_trl_preference,
    "prompt_csv": read_prompt_csv,
    "trl_prompt": read_trl_prompt,
    "switchboard": read_switchboard,
    "messages": read_messages,
    "sharegpt": read_sharegpt,
}


def read_records(source: str, path: str, cfg: DataConfig) -> Records:
    if source not in READERS:
        raise PipelineError(f"params.yaml: data.source={source!r}: unknown source; known: {', '.join(sorted(READERS))}")
    return READERS[source](Path(path), cfg)
