"""Every reader's refusal of a malformed record: one line naming the file and the line or record, and the rule."""

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from rlhfpipe.data.formats import read_records
from rlhfpipe.errors import PipelineError
from conftest import params_config

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
MULTIMOOD = json.loads((FIXTURES / "multimood.jsonl").read_text().splitlines()[0])
ESCONV = json.loads((FIXTURES / "esconv.json").read_text())
USER, ASSISTANT = {"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def edited(fixture: str, old: str, new: str) -> str:
    text = (FIXTURES / fixture).read_text()
    assert old in text
    return text.replace(old, new, 1)


def esconv(edit) -> str:
    dialogues = json.loads(json.dumps(ESCONV))
    edit(dialogues)
    return json.dumps(dialogues, indent=2)


def counsel_row(**changes) -> dict:
    row = {"questionID": "q1", "questionTitle": "Sad", "questionText": "I feel sad.", "topic": "depression",
           "answerText": "That sounds hard.", "upvotes": 2, "split": "train"}
    return {**row, **changes}


def switchboard(caller: str) -> str:
    lines = (FIXTURES / "switchboard/sw00utt/sw_0001_4325.utt.csv").read_text().splitlines(keepends=True)
    rows = list(csv.reader(lines))
    rows[2][rows[0].index("caller")] = caller
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


# (source, file name, content, where: "LINE" for ":<n>" or "record <n>", the rule's text)
CASES = {
    "multimood_history_not_object": ("multimood", "m.jsonl", jsonl({**MULTIMOOD, "history_chat": [5]}),
                                     ":1", "history_chat[0] must be an object with 'role' and 'content'"),
    "multimood_history_role": ("multimood", "m.jsonl", jsonl({**MULTIMOOD, "history_chat": [
        {"role": "robot", "content": "x"}]}), ":1", "history_chat[0].role 'robot' is not user/assistant/client/therapist"),
    "mesc_speaker": ("mesc_csv", "mesc.csv", edited("mesc.csv", "I don't know.,Client,", "I don't know.,Robot,"),
                     ":3", "key 'Speaker' must be Client or Therapist, got 'Robot'"),
    "esconv_turn_not_object": ("esconv", "ESConv.json", esconv(lambda d: d[1]["dialog"].__setitem__(0, "hi")),
                               ": record 1", "expected an object with 'speaker' and 'content'"),
    "esconv_speaker": ("esconv", "ESConv.json", esconv(lambda d: d[0]["dialog"][1].__setitem__("speaker", "robot")),
                       ": record 0", "key 'speaker' must be one of"),
    "empathetic_dialogues_header": ("empathetic_dialogues", "ed.csv", "id,idx,context\n1,1,sad\n", ":1",
                                    "header must start with conv_id,utterance_idx"),
    "human_assistant_prefix": ("human_assistant", "ha.jsonl", jsonl({"text": "hello there"}), ":1",
                               "key 'text' must start with <HUMAN>: or <ASSISTANT>:, got 'hello there'"),
    "hh_not_a_transcript": ("hh_rlhf", "hh.jsonl.gz", jsonl({"chosen": "just text", "rejected": "more text"}), ":1",
                            "key 'chosen' must be a transcript of"),
    "hh_ends_with_human": ("hh_rlhf", "hh.jsonl.gz", jsonl({
        "chosen": "\n\nHuman: Hi\n\nAssistant: Yo\n\nHuman: Ok", "rejected": "\n\nHuman: Hi\n\nAssistant: No"}), ":1",
        "key 'chosen' must end with an Assistant turn"),
    "trl_no_shared_prompt": ("trl_preference", "p.jsonl", jsonl({"chosen": "Blue sky.", "rejected": "Green grass."}),
                             ":1", "missing key 'prompt', and 'chosen'/'rejected' share no leading words"),
    "trl_two_assistant_messages": ("trl_preference", "p.jsonl", jsonl({
        "prompt": [USER], "chosen": [ASSISTANT, ASSISTANT], "rejected": [ASSISTANT]}), ":1",
        "key 'chosen' must end in one assistant message after the prompt"),
    "trl_prompt_ends_with_assistant": ("trl_prompt", "q.jsonl", jsonl({"prompt": [USER, ASSISTANT]}), ":1",
                                       "key 'prompt' must end with a user message, got assistant"),
    "switchboard_caller": ("switchboard", "sw", {"sw00utt/sw_0001_4325.utt.csv": switchboard("C")}, "utt.csv:3",
                           "key 'caller' must be A or B, got 'C'"),
    "switchboard_no_csv": ("switchboard", "sw", {"notes.txt": "x"}, "", "no *.csv files found (searched recursively)"),
    "json_array_invalid": ("esconv", "ESConv.json", '[\n  {"dialog": []},\n  {"dialog": [}\n]\n', ":3",
                           "not valid JSON"),
    "json_array_not_object": ("esconv", "ESConv.json", "[5]\n", ": record 0", "expected a JSON object, got int"),
    "csv_field_over_the_limit": ("mesc_csv", "mesc.csv", edited("mesc.csv", '"So, how are you', '"' + "x" * 200_000),
                                 ":2", "malformed CSV (field larger than field limit"),
    "counsel_upvotes_bool": ("counsel_chat", "cc.jsonl", jsonl(counsel_row(upvotes=True)), ":1",
                             "key 'upvotes' must be an integer, got bool"),
    "counsel_split_label": ("counsel_chat", "cc.jsonl", jsonl(counsel_row(split="holdout")), ":1",
                            "key 'split' must be train, val or test, got 'holdout'"),
    "messages_not_a_list": ("trl_preference", "p.jsonl", jsonl({"prompt": {"a": 1}, "chosen": [ASSISTANT],
                                                               "rejected": [ASSISTANT]}), ":1",
                            "key 'prompt' must be a list of {role, content} messages, got dict"),
    "messages_bad_role": ("trl_preference", "p.jsonl", jsonl({"prompt": [{"role": "robot", "content": "x"}],
                                                             "chosen": [ASSISTANT], "rejected": [ASSISTANT]}), ":1",
                          "prompt[0] must be an object with role system/user/assistant"),
    "messages_content_not_str": ("trl_preference", "p.jsonl", jsonl({"prompt": [USER], "chosen": [
        {"role": "assistant", "content": 3}], "rejected": [ASSISTANT]}), ":1", "chosen[0].content must be str"),
    "dataset_dir_unloadable": ("trl_preference", "ds", {"dataset_dict.json": "{not json"}, "",
                               "cannot load dataset directory"),
}


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    if isinstance(content, dict):  # a directory of files
        for rel, text in content.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(content.encode()))
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_reader_refuses_with_one_line_naming_the_place(tmp_path, monkeypatch, case):
    source, name, content, where, rule = CASES[case]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write(tmp_path, name, content)
    with pytest.raises(PipelineError) as err:
        read_records(source, str(path), params_config("data", min_words=1, max_words=400))
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    place = message.split(": ", 1)[0] if not where.startswith(": record") else message
    assert where in place and rule in message, message
