"""Chat formats (messages, ShareGPT) through the real prepare stage: every format and variant, the
drop rules, hand-counted SFT examples and prompts, and one-line errors that leave nothing written.

Expected rows are written out by hand from the fixtures in tests/fixtures/formats/chat/ and the
rule "prompt = the system message + data.max_history_messages earlier turns + the user's turn".
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, quick_params, stage
from rlhfpipe.errors import PipelineError

CHAT = REPO / "tests/fixtures/formats/chat"
SPLITS = ("train", "val", "test")


def _stage_main():
    spec = importlib.util.spec_from_file_location("prepare_stage", REPO / "stages/prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


PREPARE = _stage_main()


@pytest.fixture
def project(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # keep ~/.cache clean
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_data_params(project: Path, source: str, path, **data) -> None:
    params = quick_params()
    params["data"].update({"source": source, "path": str(path), "max_history_messages": 1, **data})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_prepare(project: Path, source: str, path, **data) -> tuple[dict[str, list[dict]], dict]:
    """Run the prepare stage in-process; its files by name and metrics/data.json."""
    write_data_params(project, source, path, **data)
    PREPARE(["data/prepared", "metrics/data.json"])
    files = {f.stem: [json.loads(line) for line in f.read_text().splitlines()]
             for f in sorted((project / "data/prepared").glob("*.jsonl"))}
    return files, json.loads((project / "metrics/data.json").read_text())


def all_splits(files: dict, kind: str) -> list[dict]:
    return sorted((row for s in SPLITS for row in files[f"{kind}_{s}"]), key=lambda row: row["id"])


def sys_(text):
    return {"role": "system", "content": text}


def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


# --------------------------------------------------------------------------------------------------
# A multi-turn conversation with a system prompt, counted by hand
# --------------------------------------------------------------------------------------------------
S = sys_("You are a patient listener.")
U1, A1 = user("I could not sleep again last night."), bot("That sounds exhausting. What kept you awake?")
U2, A2 = user("Worrying about my exam on Friday."), bot("Exams can weigh on you. How prepared do you feel?")
U3, A3 = user("Not very. I keep putting it off."), bot("Could we pick one small topic to start with tonight?")


@pytest.mark.parametrize("history, prompts", [
    (0, [[S, U1], [S, U2], [S, U3]]),
    (1, [[S, U1], [S, A1, U2], [S, A2, U3]]),
    (2, [[S, U1], [S, U1, A1, U2], [S, U2, A2, U3]]),
    (6, [[S, U1], [S, U1, A1, U2], [S, U1, A1, U2, A2, U3]]),
])
def test_multi_turn_conversation_with_system_prompt(project, history, prompts):
    files, metrics = run_prepare(project, "messages", CHAT / "messages.jsonl", max_history_messages=history)
    sft = [row for row in all_splits(files, "sft") if row["id"].startswith("messages-0:")]
    assert [(row["id"], row["prompt"], row["completion"], row["reference"]) for row in sft] == [
        ("messages-0:2", prompts[0], [A1], A1["content"]),
        ("messages-0:4", prompts[1], [A2], A2["content"]),
        ("messages-0:6", prompts[2], [A3], A3["content"]),
    ]
    assert len({row["group_id"] for row in sft}) == 1  # one conversation, one split
    prompt_rows = [row for row in all_splits(files, "prompts") if row["id"].startswith("messages-0:")]
    assert [(row["prompt"], row["reference"]) for row in prompt_rows] == [
        (prompts[0], A1["content"]), (prompts[1], A2["content"]), (prompts[2], A3["content"])]
    # the other two records: a multimodal exchange, and an exchange with an unanswered last user turn
    assert [(row["id"], row["prompt"], row["reference"]) for row in all_splits(files, "sft")[3:]] == [
        ("messages-1:1", [user("What is in this picture?")], "A cat asleep on a chair."),
        ("messages-2:1", [user("Thanks for listening.")], "Any time. Take care tonight."),
    ]
    counts = metrics["counts"]
    assert [sum(counts[f"{kind}_{s}"] for s in SPLITS) for kind in ("dialogues", "sft", "prompts", "pairs")] == [3, 5, 5, 0]
    assert metrics["dropped"] == {"non_text_content_part": 2, "unanswered_last_user_turn": 1}
    dialogues = all_splits_dialogues(files)
    assert [t["role"] for t in dialogues["messages-0"]["turns"]] == ["system"] + ["user", "assistant"] * 3


def all_splits_dialogues(files: dict) -> dict[str, dict]:
    return {d["dialogue_id"]: d for s in SPLITS for d in files[f"dialogues_{s}"]}


# --------------------------------------------------------------------------------------------------
# Each format and variant, written out by hand (data.max_history_messages = 1)
# --------------------------------------------------------------------------------------------------
VARIANTS = {
    "messages JSON array": ("messages", "messages.json", {}, [
        ("messages-0:1", [user("How do I calm down before a talk?")], "Slow breathing helps: in for four, out for six."),
        ("messages-1:2", [sys_("Be warm."), user("My cat died.")], "I am so sorry. How long was she with you?"),
    ], {}),
    "messages prompt-completion": ("messages", "messages_prompt_completion.jsonl", {}, [
        # "Hello!" sits in the prompt: context, not a target
        ("messages-0:4", [sys_("Answer briefly."), bot("Hello!"), user("What color is the sky?")], "Blue."),
        ("messages-1:1", [user("The sky is")], "blue."),
    ], {}),
    "messages drop rules": ("messages", "messages_rules.jsonl", {}, [
        ("messages-6:2", [bot("Hello, how can I help?"), user("I feel stuck at work.")], "What feels most stuck right now?"),
    ], {"empty_turn": 2, "no_assistant_turn": 2, "non_text_content_part": 1, "roles_not_alternating": 2}),
    "sharegpt human/gpt with a system field": ("sharegpt", "sharegpt.json", {}, [
        ("sharegpt-0:2", [sys_("You are kind."), user("I failed my driving test.")], "That is disappointing. What happened?"),
        ("sharegpt-0:4", [sys_("You are kind."), bot("That is disappointing. What happened?"),
                          user("I stalled at a junction.")], "Stalling is common. You can book another try."),
        ("sharegpt-1:2", [sys_("Be brief."), user("Any tip for sleep?")], "Keep the same bedtime every night."),
    ], {}),
    "sharegpt user/assistant": ("sharegpt", "sharegpt_user_assistant.jsonl", {}, [
        ("sharegpt-0:1", [user("I moved to a new city.")], "How are you finding it?"),
        ("sharegpt-0:3", [bot("How are you finding it?"), user("Lonely, to be honest.")],
         "That is hard. Have you found any clubs nearby?"),
    ], {}),
    "sharegpt role/content": ("sharegpt", "sharegpt_role_content.jsonl", {}, [
        ("sharegpt-0:2", [sys_("You are a coach."), user("I want to run a 5k.")], "Start with three short runs a week."),
    ], {}),
    "two speakers, first is user": ("sharegpt", "two_speakers.jsonl", {"chat_speakers": "first_is_user"}, [
        ("sharegpt-0:1", [user("hey, are you free tonight?")], "yes, after seven."),
        ("sharegpt-0:3", [bot("yes, after seven."), user("dinner then?")], "sounds good."),
        ("sharegpt-1:1", [user("did you get home ok?")], "yes, thanks!"),
    ], {}),
    "two speakers, tom named": ("sharegpt", "two_speakers.jsonl",
                                {"chat_speakers": "named", "chat_assistant_speaker": "tom"}, [
        ("sharegpt-0:1", [user("hey, are you free tonight?")], "yes, after seven."),
        ("sharegpt-0:3", [bot("yes, after seven."), user("dinner then?")], "sounds good."),
        # record 1: tom opens (history only) and maria's reply is never answered
    ], {"no_answered_user_turn": 1, "unanswered_last_user_turn": 1}),
    "two speakers, maria named": ("sharegpt", "two_speakers.jsonl",
                                  {"chat_speakers": "named", "chat_assistant_speaker": "maria"}, [
        ("sharegpt-0:2", [bot("hey, are you free tonight?"), user("yes, after seven.")], "dinner then?"),
        ("sharegpt-1:1", [user("did you get home ok?")], "yes, thanks!"),
    ], {"unanswered_last_user_turn": 1}),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_format_variant_through_prepare(project, name):
    source, fixture, params, expected, dropped = VARIANTS[name]
    files, metrics = run_prepare(project, source, CHAT / fixture, **params)
    assert [(row["id"], row["prompt"], row["reference"]) for row in all_splits(files, "sft")] == expected
    assert all(row["completion"] == [bot(row["reference"])] for row in all_splits(files, "sft"))
    assert [(row["id"], row["prompt"]) for row in all_splits(files, "prompts")] == [(i, p) for i, p, _ in expected]
    assert metrics["dropped"] == dropped


MESSAGES_ROWS = json.loads((CHAT / "messages.json").read_text())
SHAREGPT_ROWS = json.loads((CHAT / "sharegpt.json").read_text())


def test_parquet_file(project):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(SHAREGPT_ROWS), project / "chats.parquet")  # record 1 gets system=None
    files, metrics = run_prepare(project, "sharegpt", project / "chats.parquet")
    assert [(row["id"], row["prompt"][0], row["reference"]) for row in all_splits(files, "sft")] == [
        ("sharegpt-0:2", sys_("You are kind."), "That is disappointing. What happened?"),
        ("sharegpt-0:4", sys_("You are kind."), "Stalling is common. You can book another try."),
        ("sharegpt-1:2", sys_("Be brief."), "Keep the same bedtime every night."),
    ]
    assert metrics["dropped"] == {}


def test_saved_datasets_directory_keeps_its_splits(project):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(MESSAGES_ROWS[:1]),
                          "test": datasets.Dataset.from_list(MESSAGES_ROWS[1:])}).save_to_disk(str(project / "saved"))
    files, metrics = run_prepare(project, "messages", project / "saved")
    assert [row["id"] for row in files["sft_train"]] == ["messages-0:1"]
    assert [(row["id"], row["prompt"]) for row in files["sft_test"]] == [
        ("messages-1:2", [sys_("Be warm."), user("My cat died.")])]
    assert metrics["counts"]["sft_val"] == 0


def test_hub_id_is_wired_to_load_dataset(project):
    write_data_params(project, "messages", "nobody-xyz/not-a-cached-chat-set")
    with pytest.raises(PipelineError) as info:
        PREPARE(["data/prepared", "metrics/data.json"])
    assert str(info.value).startswith("nobody-xyz/not-a-cached-chat-set: no such local path, and as a hub dataset id "
                                      "it cannot be loaded offline")


# --------------------------------------------------------------------------------------------------
# Bad input: one line naming file:line (or record) and the key; nothing written
# --------------------------------------------------------------------------------------------------
GOOD = json.dumps({"messages": [user("Hi."), bot("Hello.")]})
BAD = {
    "record without messages": ("messages", "bad.jsonl", [GOOD, json.dumps({"conversation": [user("Hi.")]})], {},
                                "{p}:2: missing key 'messages' (or 'prompt' and 'completion')"),
    "record without conversations": ("sharegpt", "bad.jsonl", [GOOD], {},
                                     "{p}:1: missing key 'conversations'; found 'messages' (data.source=messages reads it)"),
    "JSON array record without conversations": (
        "sharegpt", "bad.json", [json.dumps([SHAREGPT_ROWS[0], {"turns": []}])], {},
        "{p}: record 1: missing key 'conversations'"),
    "turn without content": ("messages", "bad.jsonl", [json.dumps({"messages": [user("Hi."), {"role": "assistant"}]})], {},
                             "{p}:1: messages[1]: missing key 'content'"),
    "turn with null content": ("messages", "bad.jsonl",
                               [json.dumps({"messages": [user("Hi."), {"role": "assistant", "content": None}]})], {},
                               "{p}:1: messages[1]: key 'content' is null"),
    "sharegpt turn without value": ("sharegpt", "bad.jsonl", [json.dumps({"conversations": [{"from": "human"}]})], {},
                                    "{p}:1: conversations[0]: missing key 'value'"),
    "unknown role": ("messages", "bad.jsonl", [GOOD, json.dumps({"messages": [user("Hi."), {"role": "tool", "content": "42"}]})],
                     {}, "{p}:2: messages[1]: key 'role': unknown role 'tool'; known: system, user, human, prompter, "
                         "assistant, gpt, bot, model (for speaker names set data.chat_speakers to first_is_user or named)"),
    "non-list messages": ("messages", "bad.jsonl", [json.dumps({"messages": "Hi."})], {},
                          "{p}:1: key 'messages' must be a list of messages, got str"),
    "content part without type": ("messages", "bad.jsonl", [json.dumps({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]})],
                                  {}, "{p}:1: messages[0].content[0]: missing key 'type'"),
    "a third speaker": ("sharegpt", "bad.jsonl", [json.dumps({"conversations": [
        {"from": "ann", "value": "a"}, {"from": "bo", "value": "b"}, {"from": "cy", "value": "c"}]})],
        {"chat_speakers": "first_is_user"},
        "{p}:1: conversations[2]: key 'from': a third speaker 'cy' after 'ann' and 'bo'; "
        "data.chat_speakers=first_is_user maps exactly two speakers"),
    "named speaker absent": ("sharegpt", "bad.jsonl", [json.dumps({"conversations": [
        {"from": "ann", "value": "a"}, {"from": "bo", "value": "b"}]})],
        {"chat_speakers": "named", "chat_assistant_speaker": "tom"},
        "{p}:1: conversations[0]: key 'from': data.chat_assistant_speaker='tom' is neither of the two speakers "
        "'ann' and 'bo'"),
    "unknown chat_speakers": ("messages", "bad.jsonl", [GOOD], {"chat_speakers": "alternate"},
                              "params.yaml: data.chat_speakers='alternate': must be one of roles, first_is_user, named"),
    "named without a speaker": ("messages", "bad.jsonl", [GOOD], {"chat_speakers": "named"},
                                "params.yaml: data.chat_assistant_speaker='': must name a speaker exactly when "
                                "data.chat_speakers=named"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input_one_line_and_nothing_written(project, name):
    source, file_name, lines, params, expected = BAD[name]
    bad = project / file_name
    bad.write_text("\n".join(lines) + "\n")
    write_data_params(project, source, bad, **params)
    with pytest.raises(PipelineError) as info:
        PREPARE(["data/prepared", "metrics/data.json"])
    assert str(info.value) == expected.format(p=bad)
    assert sorted(p.name for p in project.iterdir() if p.name != "hf-cache") == sorted(["params.yaml", file_name])


def test_malformed_json_line_via_the_stage_command(project):
    bad = project / "chats.jsonl"
    bad.write_text(GOOD + "\n" + '{"messages": [{"role": "user", "content": "Hi."}\n')
    write_data_params(project, "messages", bad)
    proc = stage("prepare", "data/prepared", "metrics/data.json", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}:2: not valid JSON (") and len(proc.stderr.strip().splitlines()) == 1
    assert not (project / "data/prepared").exists() and not (project / "metrics").exists()
