"""Preference pairs: the ROUGE filter, de-duplication and the split, upvote pairs from real counsel-chat data."""

import json
from collections import Counter

import pytest

from conftest import params_config
from rlhfpipe.data.preferences import dedupe_and_split, pair, prompt_key, rouge_filter, upvote_pairs

from conftest import SHARED_DATA, copy_repo, stage, tiny_params, write_params
from conftest import missing


def test_rouge_filter_keeps_different_and_drops_similar():
    reference = "It sounds like losing your job at the bakery has left you feeling sad."
    samples = [
        "It sounds like losing your job at the bank has left you feeling sad.",  # ROUGE-L 13/14 ~ 0.93: dropped
        "Let us take this slowly today.",  # shares only "this"-free words: ROUGE-L 0: kept
        "",  # empty: dropped
    ]
    kept, dropped = rouge_filter(reference, samples, 0.3)
    assert [k for k, _ in kept] == ["Let us take this slowly today."]
    assert kept[0][1] == 0.0
    assert dropped == Counter({"rouge_at_or_above_threshold": 1, "empty_response": 1})
    kept_all, dropped_all = rouge_filter(reference, [*samples[:2], reference], 1.0)
    # threshold 1.0 keeps everything but an exact copy (ROUGE-L 1.0, at the threshold)
    assert [k for k, _ in kept_all] == samples[:2]
    assert kept_all[0][1] == pytest.approx(13 / 14)  # LCS 13 of 14 words both ways: F = 13/14
    assert dropped_all == Counter({"rouge_at_or_above_threshold": 1})


def test_dedupe_drops_duplicates_and_identical_pairs_and_keeps_prompts_apart():
    prompt = [{"role": "user", "content": "hello"}]
    pairs = [pair(prompt, "a", "b", f"g{i}", "generated") for i in range(3)]  # same prompt, three groups
    pairs.append(pair(prompt, "a", "a", "g9", "generated"))
    pairs += [pair([{"role": "user", "content": f"p{i}"}], "good", "bad", f"h{i}", "generated") for i in range(200)]
    dropped = Counter()
    splits = dedupe_and_split(pairs, params_config("preferences", test_fraction=0.2), dropped)
    assert dropped["chosen_equals_rejected"] == 1
    assert dropped["duplicate"] == 2
    assert splits["test"], "some pairs must land in the test split"
    train_prompts = {prompt_key(p["prompt"]) for p in splits["train"]}
    assert not any(prompt_key(p["prompt"]) in train_prompts for p in splits["test"])


def test_upvote_pairs_drop_ties():
    def answer(q, votes, text):
        return {"dialogue_id": f"{q}-{text}", "group_id": q, "meta": {"upvotes": votes},
                "turns": [{"role": "user", "content": f"question {q}"}, {"role": "assistant", "content": text}]}
    pairs, dropped = upvote_pairs([answer("q1", 3, "x"), answer("q1", 1, "y"), answer("q1", 1, "z")])
    assert dropped["upvote_tie"] == 1
    assert sorted((p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs) == [("x", "y"), ("x", "z")]


def test_counsel_chat_fixture_gives_one_upvote_pair():
    from pathlib import Path

    from rlhfpipe.data.formats import read_records

    fixture = Path(__file__).parent / "fixtures/formats/counsel_chat.csv"
    records = read_records("counsel_chat", str(fixture), params_config("data", source="counsel_chat", path=str(fixture)))
    pairs, dropped = upvote_pairs([d.to_json() for d in records.dialogues])
    # question 0 has answers with 3 and 0 upvotes; question 1 one answer; question 2 one non-empty answer
    assert len(pairs) == 1 and dropped == Counter()
    (only,) = pairs
    assert only["chosen"][0]["content"].startswith("Feelings of worthlessness are common in depression.")
    assert only["rejected"][0]["content"].startswith("Start by writing down one thing you did")
    assert only["prompt"] == [{"role": "user", "content": records.dialogues[0].turns[0].content}]
    assert only["group_id"] == "0"


def test_counsel_chat_preset_is_valid_and_selects_upvotes():
    from pathlib import Path

    from rlhfpipe.presets import overrides

    repo = Path(__file__).resolve().parents[1]
    args = overrides(repo / "configs/presets/counsel_chat.yaml", repo / "params.yaml")
    assert "data.source=\"counsel_chat\"" in args and "preferences.strategy=\"upvotes\"" in args


@pytest.mark.slow
def test_counsel_chat_upvotes_through_prepare_preferences_and_reward(tmp_path):
    csv_path = SHARED_DATA / "counsel_chat.csv"
    if not csv_path.is_file():
        missing("../shared/data/counsel_chat.csv is not beside this checkout")
    repo = copy_repo(tmp_path / "repo")
    params = tiny_params({
        "data": {"source": "counsel_chat", "path": str(csv_path)},
        "preferences": {"strategy": "upvotes"},
        "sft": {"epochs": 0.3, "batch_size": 16, "max_length": 192},
        "reward": {"epochs": 1.0, "batch_size": 16, "max_length": 256, "bootstrap_samples": 200},
    })
    write_params(repo, params)
    for args in (("prepare", "data/prepared", "metrics/data.json"),
                 ("base_model", "data/prepared", "models/base"),
                 ("sft", "data/prepared", "models/base", "models/sft", "metrics/sft.json", "metrics/train/sft"),
                 ("preferences", "data/prepared", "models/sft", "data/preferences", "metrics/preferences.json"),
                 ("reward", "data/prepared", "data/preferences", "models/sft", "models/reward", "metrics/reward.json",
                  "metrics/reward_calibration.json", "metrics/train/reward")):
        proc = stage(*args, cwd=repo)
        assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((repo / "metrics/data.json").read_text())
    assert data["counts"]["dialogues_train"] + data["counts"]["dialogues_val"] + data["counts"]["dialogues_test"] > 2000
    prefs = json.loads((repo / "metrics/preferences.json").read_text())
    assert prefs["by_source"] == {"upvotes": prefs["kept"]["train"] + prefs["kept"]["test"]}
    assert prefs["dropped"]["upvote_tie"] > 0
    reward = json.loads((repo / "metrics/reward.json").read_text())
    low, high = reward["accuracy_ci95"]
    assert 0.0 <= low <= reward["accuracy"] <= high <= 1.0
    print(f"counsel-chat upvotes: {reward['test_pairs']} held-out pairs, accuracy {reward['accuracy']} "
          f"[{low}, {high}], length baseline {reward['length_baseline_accuracy']}")
