"""Format readers: normalised content of a small fixture per format, the real counsel-chat file,
datasets directories offline, and one-line errors on bad input."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import params_config
from rlhfpipe.data.formats import read_records
from rlhfpipe.errors import PipelineError
from conftest import needs, require_module

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
COUNSEL_CHAT = Path(__file__).resolve().parents[2] / "shared/data/counsel_chat.csv"


def read(source: str, name: str, **cfg):
    return read_records(source, str(FIXTURES / name), params_config("data", **cfg))


def roles_texts(dialogue) -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in dialogue.turns]


def error_of(source: str, path: Path | str, **cfg) -> str:
    with pytest.raises(PipelineError) as info:
        read_records(source, str(path), params_config("data", **cfg))
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------------------------------
# Dialogue formats
# --------------------------------------------------------------------------------------------------
def test_multimood_folds_lines_into_labelled_dialogues():
    records = read("multimood", "multimood.jsonl")
    first, second = records.dialogues
    assert first.dialogue_id == first.group_id == "7"
    assert (first.situation, first.problem_type) == ("Feels low since changing jobs.", "job stress")
    assert roles_texts(first) == [
        ("user", "Hi. I have been feeling low."), ("assistant", "Hi, what brings you in today?"),
        ("user", "My new boss yells at me."), ("assistant", "It sounds like work has been weighing on you."),
    ]
    assert [t.emotion for t in first.turns] == ["sadness", "neutral", "fear", "neutral"]
    assert [t.strategy for t in first.turns] == [None, "Open question", None, "Restatement"]
    assert second.dialogue_id == "8" and roles_texts(second)[-1] == ("assistant", "Welcome back.")


def test_mesc_csv_merges_consecutive_utterances_of_a_speaker():
    first, second = read("mesc_csv", "mesc.csv").dialogues
    assert roles_texts(first) == [
        ("assistant", "So, how are you feeling today?"),
        ("user", "I don't know. I just feel tired, all the time."),
        ("assistant", "That sounds exhausting. Can you tell me more about it?"),
    ]
    assert [t.strategy for t in first.turns] == ["Open question", None, "Restatement"]
    assert first.turns[1].emotion == "sadness"
    assert (second.dialogue_id, roles_texts(second)[0]) == ("1", ("user", "Hello."))


def test_esconv_json_roles_strategies_and_meta():
    first, second = read("esconv", "esconv.json").dialogues
    assert roles_texts(first)[:2] == [("user", "Hello"), ("assistant", "Hi, how are you doing today?")]
    assert [t.strategy for t in first.turns if t.role == "assistant"] == [
        "Question", "Reflection of feelings", "Self-disclosure"]  # "Questions" merged into the first label's turn
    assert first.turns[3].content == "That sounds really stressful. What happened?"
    assert first.turns[4].content == "They cut the whole team."  # a feedback-annotated turn is kept
    assert (first.problem_type, first.turns[0].emotion) == ("job crisis", "anxiety")
    assert first.meta["survey_score"]["seeker"]["final_emotion_intensity"] == "2"
    # speaker/listener release, "Affirmation & Reassurance" and "Other" variants
    assert [t.role for t in second.turns] == ["user", "assistant", "user"]
    assert second.turns[1].strategy == "Affirmation and Reassurance"
    assert second.turns[1].content == "You are handling a painful thing. I am here for you."


def test_esconv_jsonl_usr_sys():
    first, second = read("esconv_jsonl", "esconv.jsonl").dialogues
    assert [t.role for t in first.turns] == ["user", "assistant", "user", "assistant"]
    assert [t.strategy for t in first.turns] == [None, "Question", None, "Providing Suggestions"]
    assert first.situation == "My parents read my messages." and first.turns[0].emotion == "anger"
    assert second.turns[1].strategy == "Restatement or Paraphrasing"  # "information" merged after it
    assert second.dialogue_id != first.dialogue_id


def test_empathetic_dialogues_commas_speakers_and_extra_fields():
    first, second = read("empathetic_dialogues", "empathetic_dialogues.csv").dialogues
    assert first.dialogue_id == first.group_id == "hit:0_conv:1"
    assert first.situation.endswith("a lot of people, but it only felt like us in the world.")
    assert first.meta == {"emotion": "sentimental"} and first.turns[0].emotion == "sentimental"
    assert [t.role for t in first.turns] == ["user", "assistant", "user", "assistant"]
    assert first.turns[1].content == "Was this a friend you were in love with, or just a best friend?"
    assert roles_texts(second) == [  # the second line has two extra trailing fields
        ("user", "I woke up to a crash downstairs last night!"),
        ("assistant", "Oh no, that sounds scary. What was it?"),
        ("user", "Just the cat knocking over a vase."),
    ]


def test_counsel_chat_fixture_groups_splits_and_drops_empty_answers():
    records = read("counsel_chat", "counsel_chat.csv")
    assert [d.group_id for d in records.dialogues] == ["0", "0", "1", "2"]
    assert [d.split for d in records.dialogues] == ["train", "train", "val", "test"]
    assert records.dropped == {"empty_answer": 1}
    first = records.dialogues[0]
    assert first.turns[0].content == ("Can I change my feeling of being worthless?\n"
                                      "I barely sleep, and I keep thinking I'm worthless.\n   How can I change that?")
    assert first.turns[1].content.startswith("Feelings of worthlessness are common in depression.\nA therapist")
    assert first.meta == {"upvotes": 3, "topic": "depression"}
    assert records.dialogues[2].turns[0].content == "How do I stop arguing with my mother?"


@needs(COUNSEL_CHAT.is_file(), "shared counsel_chat.csv not present")
def test_counsel_chat_real_file():
    records = read_records("counsel_chat", str(COUNSEL_CHAT), params_config("data"))
    assert len(records.dialogues) == 2129 and records.dropped == {}
    assert len({d.group_id for d in records.dialogues}) == 815
    assert Counter(d.split for d in records.dialogues) == {"train": 1839, "val": 173, "test": 117}
    splits_per_question = {}
    for d in records.dialogues:
        splits_per_question.setdefault(d.group_id, set()).add(d.split)
    assert all(len(s) == 1 for s in splits_per_question.values())
    assert all(isinstance(d.meta["upvotes"], int) and d.meta["topic"] for d in records.dialogues)


def test_context_response_groups_answers_to_one_context():
    dialogues = read("context_response", "context_response.json").dialogues
    assert [d.turns[0].role for d in dialogues] == ["user"] * 3
    assert dialogues[0].group_id == dialogues[1].group_id != dialogues[2].group_id
    assert roles_texts(dialogues[2]) == [("user", "How can I stop worrying all the time?"),
                                         ("assistant", "Try setting aside a short worry time each day.")]


@pytest.mark.parametrize("name", ["human_assistant.jsonl", "human_assistant.txt"])
def test_human_assistant_exchanges(name):
    first, second = read("human_assistant", name).dialogues
    assert [t.role for t in first.turns] == ["user", "assistant"]
    assert [t.role for t in second.turns] == ["user", "assistant", "user", "assistant"]
    assert all(t.content and "<" not in t.content for d in (first, second) for t in d.turns)


def test_human_assistant_txt_content():
    first, _ = read("human_assistant", "human_assistant.txt").dialogues
    assert roles_texts(first) == [
        ("user", "What does a therapist do?"),
        ("assistant", "A therapist helps you understand your feelings and find ways to cope."),
    ]


def test_switchboard_rebuilds_turns_and_strips_markup():
    records = read("switchboard", "switchboard", min_words=5, max_words=400)
    (dialogue,) = records.dialogues
    assert dialogue.dialogue_id == "sw4325"
    assert roles_texts(dialogue) == [
        ("user", "Okay. So, what kind of experience do you, do you have with child care?"),
        ("assistant", "I think, we have two kids. and we use a day care"),
        ("user", "Uh-huh."),
        ("assistant", "It's pretty good, I mean, overall."),
    ]
    assert records.dropped == {"empty_turn": 1, "word_count_out_of_range": 1}  # <Laughter>; the 2-word call


def test_switchboard_single_file_and_max_words():
    one = FIXTURES / "switchboard/sw01utt/sw_0102_2001.utt.csv"
    (dialogue,) = read_records("switchboard", str(one), params_config("data", min_words=0, max_words=10)).dialogues
    assert roles_texts(dialogue) == [("user", "Hi."), ("assistant", "hi.")]
    with pytest.raises(PipelineError, match="no records left after dropping word_count_out_of_range=1"):
        read_records("switchboard", str(one), params_config("data", min_words=3, max_words=10))


# --------------------------------------------------------------------------------------------------
# Preference and prompt formats
# --------------------------------------------------------------------------------------------------
def test_orca_dpo_current_and_old_columns():
    records = read("orca_dpo", "orca_dpo.jsonl")
    first, second = records.pairs
    assert first.prompt == [{"role": "user", "content": "You will be given a definition of a task first. Translate 'Bonjour' into English."}]
    assert (first.chosen, first.rejected) == ("Hello.", "Bonjour means goodbye.")
    assert second.prompt[0] == {"role": "system", "content": "You are an AI assistant. Provide a detailed answer."}
    assert roles_texts(records.dialogues[1])[-1] == ("assistant", "2 + 2 equals 4.")
    (old,) = read("orca_dpo", "orca_dpo_old.jsonl").pairs
    assert (old.chosen, old.rejected) == ("Yes, because of Rayleigh scattering.", "No.")
    assert old.prompt[-1] == {"role": "user", "content": "Is the sky blue?"}


def test_hh_rlhf_gzip_transcripts_split_into_prompt_and_responses():
    records = read("hh_rlhf", "hh_rlhf.jsonl.gz")
    single, multi = records.pairs
    assert single.prompt == [{"role": "user", "content": "What are some cuss words in english?"}]
    assert (single.chosen, single.rejected) == ("I'd rather not list those.", "Here is a list of words.")
    assert [m["role"] for m in multi.prompt] == ["user", "assistant", "user"]
    assert multi.prompt[1]["content"] == "Do you have yeast?"
    assert (multi.chosen, multi.rejected) == ("Mix flour, water, salt and yeast, then knead.", "Buy some bread.")
    assert records.dropped == {"prompt_mismatch": 1}
    assert [d.dialogue_id for d in records.dialogues] == [p.pair_id for p in records.pairs]
    assert roles_texts(records.dialogues[1])[-1] == ("assistant", multi.chosen)


def test_trl_preference_standard_explicit_and_implicit():
    explicit, implicit = read("trl_preference", "trl_preference_standard.jsonl").pairs
    assert (explicit.prompt, explicit.chosen, explicit.rejected) == (
        [{"role": "user", "content": "The sky is"}], "blue.", "green.")
    assert (implicit.prompt, implicit.chosen, implicit.rejected) == (
        [{"role": "user", "content": "The sky is"}], "blue.", "bright green.")
    assert explicit.group_id == implicit.group_id  # same prompt, same split


def test_trl_preference_conversational_explicit_and_implicit():
    records = read("trl_preference", "trl_preference_conversational.jsonl")
    explicit, implicit = records.pairs
    assert explicit.prompt == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "What color is the sky?"}]
    assert (explicit.chosen, explicit.rejected) == ("It is blue.", "It is green.")
    assert implicit.prompt == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "What color is the sky?"}]
    assert (implicit.chosen, implicit.rejected) == ("It is blue.", "It is green.")
    assert [t.role for t in records.dialogues[0].turns] == ["system", "user", "assistant"]


def test_prompt_csv_column_and_empty_prompt():
    records = read("prompt_csv", "prompts.csv")
    assert records.prompts == [
        [{"role": "user", "content": "I feel anxious before exams, what can I do?"}],
        [{"role": "user", "content": "My friend stopped talking to me.\nWhat should I say to her?"}],
    ]
    assert records.dropped == {"empty_prompt": 1}
    assert read("prompt_csv", "prompts.csv", prompt_column="category").prompts[0] == [{"role": "user", "content": "anxiety"}]


def test_trl_prompt_string_and_messages():
    assert read("trl_prompt", "trl_prompt.jsonl").prompts == [
        [{"role": "user", "content": "The sky is"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What color is the sky?"}],
    ]


# --------------------------------------------------------------------------------------------------
# datasets directories, offline
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch, tmp_path):
    datasets = require_module("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # keep ~/.cache clean
    return datasets


CONTEXT_ROWS = [{"Context": "I can't sleep.", "Response": "Try a fixed bedtime."},
                {"Context": "I feel alone.", "Response": "Who could you call today?"}]


def test_load_from_disk_dataset_and_dataset_dict(offline, tmp_path):
    offline.Dataset.from_list(CONTEXT_ROWS).save_to_disk(str(tmp_path / "single"))
    records = read_records("context_response", str(tmp_path / "single"), params_config("data"))
    assert [roles_texts(d)[1][1] for d in records.dialogues] == ["Try a fixed bedtime.", "Who could you call today?"]
    assert {d.split for d in records.dialogues} == {None}  # one split: nothing to honour

    offline.DatasetDict({"train": offline.Dataset.from_list(CONTEXT_ROWS[:1]),
                         "validation": offline.Dataset.from_list(CONTEXT_ROWS[1:])}).save_to_disk(str(tmp_path / "dict"))
    records = read_records("context_response", str(tmp_path / "dict"), params_config("data"))
    assert [d.split for d in records.dialogues] == ["train", "val"]


def test_load_dataset_from_dir_of_json_files(offline, tmp_path):
    data = tmp_path / "orca"
    data.mkdir()
    rows = [json.loads(line) for line in (FIXTURES / "orca_dpo.jsonl").read_text().splitlines()]
    (data / "train.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (data / "test.jsonl").write_text(json.dumps(rows[1]) + "\n")
    records = read_records("orca_dpo", str(data), params_config("data"))
    assert {(p.chosen, p.split) for p in records.pairs} == {("Hello.", "train"), ("2 + 2 equals 4.", "test")}


def test_dataset_record_error_names_the_record(offline, tmp_path):
    offline.Dataset.from_list([{"Context": "a", "Response": "b"}, {"Context": "c", "Response": None}]).save_to_disk(str(tmp_path / "ds"))
    message = error_of("context_response", tmp_path / "ds")
    assert "ds: record 1: key 'Response' must be str, got NoneType" in message


def test_hub_id_offline_and_not_cached(offline):
    message = error_of("context_response", "nobody-xyz/not-a-cached-dataset")
    assert message.startswith("nobody-xyz/not-a-cached-dataset: no such local path, and as a hub dataset id "
                              "it cannot be loaded offline")


# --------------------------------------------------------------------------------------------------
# Bad input: one line naming the file, the line (or record) and the key
# --------------------------------------------------------------------------------------------------
MULTIMOOD_LINE = (FIXTURES / "multimood.jsonl").read_text(encoding="utf-8").splitlines()[2]


def test_malformed_json_line(tmp_path):
    bad = tmp_path / "mm.jsonl"
    bad.write_text(MULTIMOOD_LINE + "\n{\"Dialogue_ID\": 9, \"Utterance\": [\n")
    assert f"{bad}:2: not valid JSON" in error_of("multimood", bad)


def test_missing_key(tmp_path):
    bad = tmp_path / "mm.jsonl"
    obj = json.loads(MULTIMOOD_LINE)
    del obj["Utterance"]
    bad.write_text(MULTIMOOD_LINE + "\n\n" + json.dumps(obj) + "\n")
    assert error_of("multimood", bad) == f"{bad}:3: missing key 'Utterance'"


def test_wrong_type(tmp_path):
    bad = tmp_path / "esconv.jsonl"
    bad.write_text(json.dumps({"emotion_type": "anger", "dialog": "hi"}) + "\n")
    assert error_of("esconv_jsonl", bad) == f"{bad}:1: key 'dialog' must be list, got str"


def test_empty_file(tmp_path):
    bad = tmp_path / "empty.jsonl"
    bad.write_text("")
    assert error_of("trl_prompt", bad) == f"{bad}: file is empty"


def test_missing_file(tmp_path):
    assert error_of("hh_rlhf", tmp_path / "absent.jsonl.gz") == f"{tmp_path / 'absent.jsonl.gz'}: file not found"


def test_non_utf8_bytes(tmp_path):
    bad = tmp_path / "prompts.csv"
    bad.write_bytes(b"prompt\nfine\ncaf\xe9 au lait\n")
    message = error_of("prompt_csv", bad)
    assert message.startswith(f"{bad}:3: not UTF-8")


def test_missing_prompt_column():
    message = error_of("prompt_csv", FIXTURES / "prompts.csv", prompt_column="text")
    assert message == f"{FIXTURES / 'prompts.csv'}:2: missing column 'text' (data.prompt_column); columns: id, prompt, category"


def test_unknown_source_name():
    assert "data.source='reddit': unknown source; known: context_response" in error_of("reddit", FIXTURES / "prompts.csv")


def test_wrong_field_count_in_csv(tmp_path):
    bad = tmp_path / "mesc.csv"
    lines = (FIXTURES / "mesc.csv").read_text().splitlines()
    bad.write_text("\n".join(lines[:3] + ["Hello.,Client,neutral"] + lines[3:]) + "\n")
    assert error_of("mesc_csv", bad) == f"{bad}:4: expected 10 fields like the header, got 3"


def test_too_few_fields_in_empathetic_dialogues(tmp_path):
    bad = tmp_path / "ed.csv"
    bad.write_text("conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\nhit:0_conv:1,1,sad,lost my dog\n")
    assert f"{bad}:2: expected at least 8 fields" in error_of("empathetic_dialogues", bad)


@pytest.mark.parametrize("variant, canonical", [
    ("[Question]", "Question"), ("questions", "Question"), ("Restatement and Paraphrasing", "Restatement or Paraphrasing"),
    ("Reflection of Feelings", "Reflection of feelings"), ("Self Disclosure", "Self-disclosure"),
    ("Affirmation & Reassurance", "Affirmation and Reassurance"), ("Providing suggestion", "Providing Suggestions"),
    ("Providing Information", "Information"), ("Other", "Others"), ("Paraphrasing", "Restatement or Paraphrasing"),
])
def test_esconv_strategy_variants_map_to_the_eight(tmp_path, variant, canonical):
    dialogues = json.loads((FIXTURES / "esconv.json").read_text())
    dialogues[1]["dialog"][1]["annotation"]["strategy"] = variant
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps(dialogues, indent=2))
    records = read_records("esconv", str(path), params_config("data"))
    assert records.dialogues[1].turns[1].strategy == canonical
    assert records.unknown_labels == {}


def test_unknown_esconv_strategy_becomes_others_counted_and_warned_once(tmp_path, capsys):
    from rlhfpipe.data.prepare import prepare

    dialogues = json.loads((FIXTURES / "esconv.json").read_text())
    dialogues[1]["dialog"][1]["annotation"]["strategy"] = "Hugging"
    dialogues[0]["dialog"][1]["annotation"]["strategy"] = "Hugging"
    path = tmp_path / "ESConv.json"
    path.write_text(json.dumps(dialogues, indent=2))
    cfg = params_config("data", min_words=0)
    records = read_records("esconv", str(path), cfg)
    assert records.dialogues[1].turns[1].strategy == "Others"
    assert records.unknown_labels == {"Hugging": 2}
    err = capsys.readouterr().err
    assert err == f"warning: {path}: strategy labels outside the eight mapped to 'Others': 'Hugging' x2\n"
    _, metrics = prepare(records, cfg)
    assert metrics["unknown_labels"] == {"Hugging": 2}


def test_corrupt_gzip(tmp_path):
    bad = tmp_path / "hh.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"chosen": "x"}\n')[:-12])
    assert error_of("hh_rlhf", bad).startswith(f"{bad}:")
