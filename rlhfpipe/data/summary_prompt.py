"""The summary task's prompt format, shared by the data side and the rewards that read a prompt back.

A summary prompt is one user message: the instruction, a blank line, then the dialogue as a transcript. Kept
apart from rlhfpipe.data.summary so that the training stages depend on the format alone.
"""

from __future__ import annotations

INSTRUCTION = "Summarise the client's situation."


def summary_prompt(dialogue_text: str) -> list[dict]:
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{dialogue_text}"}]


def dialogue_of(prompt: list[dict]) -> str | None:
    """The dialogue a summary prompt shows (its last user message after the instruction); None for any other prompt."""
    users = [m for m in prompt if m["role"] == "user"]
    if not users or not users[-1]["content"].startswith(INSTRUCTION + "\n\n"):
        return None
    return users[-1]["content"][len(INSTRUCTION) + 2:]


def prompt_key(prompt: list[dict]) -> str:
    """What identifies a summary prompt whatever system messages (MOODPO's weight instruction) surround it."""
    users = [m for m in prompt if m["role"] == "user"]
    return users[-1]["content"] if users else ""


def summary_references(rows: list[dict]) -> dict[str, list[str]]:
    """Prompt key -> its reference summaries, from prepared prompt rows; rows of other prompts are skipped.

    A list, since two dialogues with the same transcript may come with different summaries: both are valid."""
    refs: dict[str, list[str]] = {}
    for row in rows:
        if row.get("reference") and dialogue_of(row["prompt"]) is not None:
            bucket = refs.setdefault(prompt_key(row["prompt"]), [])
            if row["reference"] not in bucket:
                bucket.append(row["reference"])
    return refs
