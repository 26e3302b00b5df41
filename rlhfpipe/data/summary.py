"""The summary task: prompts that ask for a summary of a whole dialogue, its situation field as the reference.

A summary prompt is one user message, the instruction and then the dialogue as a transcript,

    Summarise the client's situation.

    Client: I was laid off from my job at the bakery, and I feel lost.
    Therapist: It sounds like losing your job at the bakery has left you feeling lost.

so the policy sees the dialogue and the rewards (rlhfpipe.rewards.summary) can read it back from the prompt.
The transcript keeps whole turns from the start within ``data.summary_max_words``: clients state their
situation early, so the start is what a summary needs.

Files and metrics have the same names and shapes as the dialogue task's (rlhfpipe.data.prepare), so every
later stage reads them unchanged: an SFT example is prompt -> reference summary, a prompt row carries the
reference, and the preferences stage pairs it with sampled summaries.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rlhfpipe.config import DataConfig
from rlhfpipe.data.prepare import SPLITS, assign_split, percentiles
from rlhfpipe.data.readers.base import finish, load_rows, optional_text
from rlhfpipe.data.schema import Dialogue, Records, Turn
from rlhfpipe.data.summary_prompt import summary_prompt
from rlhfpipe.errors import PipelineError

SPEAKERS = {"user": "Client", "assistant": "Therapist"}
SOURCES_WITH_SITUATION = ("multimood", "esconv", "esconv_jsonl", "empathetic_dialogues", "prompt_csv")
"""sources whose reader fills Dialogue.situation (prompt_csv: from data.reference_column)"""


def transcript(turns: list[Turn]) -> str:
    """One ``Client: ...`` / ``Therapist: ...`` line per turn; system turns are instructions, not dialogue."""
    return "\n".join(f"{SPEAKERS[t.role]}: {' '.join(t.content.split())}" for t in turns
                     if t.role in SPEAKERS and t.content.strip())


def within_budget(text: str, max_words: int) -> str:
    """Whole lines from the start while they fit in ``max_words``; a first line longer than that is cut."""
    kept, used = [], 0
    for line in text.splitlines():
        n = len(line.split())
        if used + n > max_words:
            if not kept:
                kept.append(" ".join(line.split()[:max_words]))
            break
        kept.append(line)
        used += n
    return "\n".join(kept)


def read_summary_csv(path: Path, cfg: DataConfig) -> Records:
    """A table with the dialogue in ``data.prompt_column`` and its summary in ``data.reference_column``.

    The dialogue text is used as the transcript as it stands (one turn per line reads best); a row without a
    summary is dropped and counted, a row without a dialogue is an error."""
    records = Records()
    for i, row in enumerate(load_rows(path)):
        for column, key in ((cfg.prompt_column, "data.prompt_column"), (cfg.reference_column, "data.reference_column")):
            if column not in row.data:
                raise PipelineError(f"{row.where}: missing column '{column}' ({key}); "
                                    f"columns: {', '.join(map(str, row.data))}")
        lines = optional_text(row.data, cfg.prompt_column, row.where).splitlines()
        text = "\n".join(" ".join(line.split()) for line in lines if line.strip())
        if not text:
            raise PipelineError(f"{row.where}: empty dialogue in column '{cfg.prompt_column}' (data.prompt_column)")
        records.dialogues.append(Dialogue(
            f"row-{i}", [], group_id=f"row-{i}", situation=optional_text(row.data, cfg.reference_column, row.where),
            source="prompt_csv", split=row.split, meta={"transcript": text}))
    return finish(records, path)


def summary_example(d: Dialogue, cfg: DataConfig) -> dict | None:
    """prompt -> reference summary for one dialogue; None when it has no situation or no dialogue text."""
    reference = " ".join(d.situation.split())
    text = d.meta.get("transcript") or transcript(d.turns)
    if not reference or not text:
        return None
    return {
        "id": f"{d.dialogue_id}:summary",
        "group_id": d.group_id or d.dialogue_id,
        "prompt": summary_prompt(within_budget(text, cfg.summary_max_words)),
        "completion": [{"role": "assistant", "content": reference}],
        "reference": reference,
        "emotion": None,
        "strategy": None,
    }


def prepare_summary(records: Records, cfg: DataConfig) -> tuple[dict[str, list[dict]], dict]:
    """The prepared files and data metrics of the summary task, shaped as ``prepare.prepare``'s."""
    kinds = ("sft", "prompts", "dialogues", "pairs")
    files: dict[str, list[dict]] = {f"{kind}_{s}": [] for kind in kinds for s in SPLITS}
    dropped = Counter(records.dropped)
    for d in records.dialogues:
        example = summary_example(d, cfg)
        if example is None:
            dropped["no_situation" if not d.situation.strip() else "empty_dialogue"] += 1
            continue
        split = assign_split(d.group_id or d.dialogue_id, d.split, cfg)
        files[f"dialogues_{split}"].append({**d.to_json(), "split": split})
        files[f"sft_{split}"].append(example)
        files[f"prompts_{split}"].append({k: example[k] for k in ("id", "group_id", "prompt", "reference")})
    # a source's own pairs and bare prompts answer a dialogue, not a summary request
    if records.pairs:
        dropped["pair_not_a_summary"] += len(records.pairs)
    if records.prompts:
        dropped["prompt_without_dialogue"] += len(records.prompts)
    if not any(files[f"sft_{s}"] for s in SPLITS):
        raise PipelineError(
            f"{cfg.path}: data.task=summary needs dialogues with a situation or summary field, and data.source="
            f"{cfg.source} gave none ({len(records.dialogues)} dialogues); "
            f"sources with one: {', '.join(SOURCES_WITH_SITUATION)}")
    metrics = {
        "counts": {f"{kind}_{s}": len(files[f"{kind}_{s}"]) for kind in ("dialogues", "sft", "prompts", "pairs")
                   for s in SPLITS},
        "dropped": dict(sorted(dropped.items())),
        "labels": {"client_emotion": {}, "strategy": {}},
        "words": {
            "prompt": percentiles([len(e["prompt"][-1]["content"].split()) for e in files["sft_train"]]),
            "response": percentiles([len(e["reference"].split()) for e in files["sft_train"]]),
        },
    }
    return files, metrics
