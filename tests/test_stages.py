"""Stage entry points on real inputs: one-line errors, nothing written on failure, local pretrained models."""

import json

import pytest
import yaml

from conftest import REPO, stage, tiny_params, write_params


@pytest.fixture
def project(tmp_path):
    write_params(tmp_path, tiny_params())
    return tmp_path


def set_params(root, section, **values):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    write_params(root, params)


@pytest.mark.parametrize("content, expected", [
    ('{"Dialogue_ID": "a", "Utterance": ["hi"]\n', "bad.jsonl:1: not valid JSON"),
    ('{"Dialogue_ID": "a", "utt_user_most_recent": ["x"], "history_chat": []}\n', "bad.jsonl:1: missing key 'Utterance'"),
    ('', "bad.jsonl: file is empty"),
])
def test_prepare_refuses_bad_input_with_one_line(project, content, expected):
    (project / "bad.jsonl").write_text(content)
    set_params(project, "data", path="bad.jsonl")
    proc = stage("prepare", "data/prepared", "metrics/data.json", cwd=project)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert expected in proc.stderr
    assert not (project / "data/prepared").exists() and not (project / "metrics/data.json").exists()


def test_unknown_source_names_the_key(project):
    set_params(project, "data", source="tweets")
    proc = stage("prepare", "data/prepared", "metrics/data.json", cwd=project)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: params.yaml: data.source='tweets': unknown source; known: "
                                   + ", ".join(sorted(__import__("rlhfpipe.data.formats").data.formats.READERS)))


def test_corpus_and_prepare_are_deterministic_and_split_by_dialogue(project):
    runs = []
    for _ in range(2):
        assert stage("corpus", "data/corpus/corpus.jsonl", cwd=project).returncode == 0
        runs.append((project / "data/corpus/corpus.jsonl").read_bytes())
        assert stage("prepare", "data/prepared", "metrics/data.json", cwd=project).returncode == 0
        runs.append(b"".join((project / f"data/prepared/sft_{s}.jsonl").read_bytes() for s in ("train", "val", "test")))
    assert runs[0] == runs[2] and runs[1] == runs[3]  # two independent runs, byte for byte
    groups = {}
    for split in ("train", "val", "test"):
        for line in (project / f"data/prepared/sft_{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert groups.setdefault(row["group_id"], split) == split
            assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    assert set(groups.values()) == {"train", "val", "test"}


def test_default_corpus_is_large_and_varied():
    from rlhfpipe.data.corpus import EMOTIONS, STRATEGIES, distinct_situations, generate_corpus

    rows = generate_corpus(2400, 0)
    assert len({r["Dialogue_ID"] for r in rows}) == 2400
    assert distinct_situations() >= 300
    assert {r["get_emotion_user_most_recent"] for r in rows} == set(EMOTIONS)
    assert {r["Strategy"] for r in rows} == set(STRATEGIES)
    assert generate_corpus(50, 3) == generate_corpus(50, 3)


@pytest.mark.slow
def test_local_pretrained_model_with_lora_through_base_model_and_sft(project):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    assert stage("corpus", "data/corpus/corpus.jsonl", cwd=project).returncode == 0
    assert stage("prepare", "data/prepared", "metrics/data.json", cwd=project).returncode == 0
    # A "pretrained" model saved locally: our tokenizer without a pad token, a random tiny Llama.
    from rlhfpipe.models.loading import train_tokenizer

    tok = train_tokenizer(["hello there, how are you feeling today?"] * 50, 300)
    local = project / "local_model"
    tok.save_pretrained(local)
    raw = AutoTokenizer.from_pretrained(local)
    config = LlamaConfig(vocab_size=len(raw), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(config).save_pretrained(local)
    set_params(project, "model", name_or_path=str(local))
    set_params(project, "sft", epochs=0.2, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                                 "target_modules": ["q_proj", "v_proj"]})
    assert stage("base_model", "data/prepared", "models/base", cwd=project).returncode == 0
    proc = stage("sft", "data/prepared", "models/base", "models/sft", "metrics/sft.json", "metrics/train/sft",
                 cwd=project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((project / "models/sft/config.json").read_text())
    assert saved["hidden_size"] == 32
    assert (project / "models/sft/model.safetensors").is_file()
    assert not (project / "models/sft/adapter_config.json").exists()  # the adapter was merged


def test_hub_id_offline_fails_with_one_line(project, monkeypatch):
    set_params(project, "model", name_or_path="someone/not-cached-model")
    proc = stage("base_model", "data/prepared", "models/base", cwd=project)
    assert proc.returncode == 2
    assert "HF_HUB_OFFLINE=1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (project / "models/base").exists()


def test_readme_names_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert "make pipeline" in text and "make test" in text


FORMAT_FIXTURES = [
    ("multimood", "multimood.jsonl"), ("mesc_csv", "mesc.csv"), ("esconv", "esconv.json"),
    ("esconv_jsonl", "esconv.jsonl"), ("empathetic_dialogues", "empathetic_dialogues.csv"),
    ("counsel_chat", "counsel_chat.csv"), ("context_response", "context_response.json"),
    ("human_assistant", "human_assistant.jsonl"), ("human_assistant", "human_assistant.txt"),
    ("orca_dpo", "orca_dpo.jsonl"), ("orca_dpo", "orca_dpo_old.jsonl"), ("hh_rlhf", "hh_rlhf.jsonl.gz"),
    ("trl_preference", "trl_preference_standard.jsonl"), ("trl_preference", "trl_preference_conversational.jsonl"),
    ("prompt_csv", "prompts.csv"), ("trl_prompt", "trl_prompt.jsonl"), ("switchboard", "switchboard"),
]


@pytest.mark.slow
@pytest.mark.parametrize("source, name", FORMAT_FIXTURES)
def test_every_format_fixture_through_the_prepare_stage(project, source, name):
    fixture = REPO / "tests" / "fixtures" / "formats" / name
    set_params(project, "data", source=source, path=str(fixture), min_words=5, max_words=400)
    proc = stage("prepare", "data/prepared", "metrics/data.json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    counts = json.loads((project / "metrics/data.json").read_text())["counts"]
    assert sum(counts.values()) > 0
    if source in ("orca_dpo", "hh_rlhf", "trl_preference"):
        assert sum(counts[f"pairs_{s}"] for s in ("train", "val", "test")) > 0
    if source in ("prompt_csv", "trl_prompt"):
        assert sum(counts[f"prompts_{s}"] for s in ("train", "val", "test")) > 0
