"""Reliability and security of every stage.

Bad data files and params stop a stage with one ``error:`` line naming the file:line or the key, and
leave its outputs as they were (absent, or the previous good ones). A training stage killed with
SIGKILL resumes under ``dvc repro`` to the result of an uninterrupted run. Pickle-only weights are
refused unless ``model.allow_pickle``; outputs hold no absolute paths.
"""

import csv
import hashlib
import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_DATA, merge, out_md5s, stage_output, tiny_params, write_params

FIXTURES = REPO / "tests" / "fixtures" / "formats"


# --------------------------------------------------------------------------------------------------
# Stages as dvc.yaml declares them, run in this process (imports once: ~30 cases stay cheap)
# --------------------------------------------------------------------------------------------------
def stage_spec(name: str) -> tuple[str, list[str], list[str]]:
    """(script, arguments, output paths) of stage ``name`` (``evaluate@ppo`` for a foreach item)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    base, _, item = name.partition("@")
    text = json.dumps(stages[base]["do"] if item else stages[base])
    foreach = stages[base].get("foreach")
    if isinstance(foreach, dict):  # moodpo@1: ${key} is the name, ${item} its value
        text = text.replace("${key}", item)
        item = foreach[item]
    text = text.replace("${moodpo.prompts}", tiny_params()["moodpo"]["prompts"])
    spec = json.loads(text.replace("${item}", item))
    words = spec["cmd"].split()
    start = next(i for i, w in enumerate(words) if w.startswith("stages/"))
    outs = [next(iter(o)) if isinstance(o, dict) else o for kind in ("outs", "metrics", "plots")
            for o in spec.get(kind, [])]
    return words[start], words[start + 1:], outs


def run_inline(name: str, cwd: Path) -> int:
    """Run a stage's ``__main__`` here, in ``cwd``; its exit code (0 when it returns)."""
    script, args, _ = stage_spec(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        mp.setattr(sys, "argv", [script, *args])
        mp.setattr(sys, "path", list(sys.path))
        try:
            runpy.run_path(str(REPO / script), run_name="__main__")
        except SystemExit as exit:
            return exit.code
    return 0


def snapshot(root: Path, paths: list[str]) -> dict:
    """md5 of every file under each path (None for a missing path), and leftover temporary siblings."""
    state = {}
    for rel in paths:
        path = root / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        state[rel] = ({str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}
                      if path.exists() else None)
        state[f"{rel} (tmp)"] = [p.name for p in path.parent.glob(f".{path.name}.*")] if path.parent.exists() else []
    return state


def set_params(root: Path, **sections) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        merge(params[section], values)
    write_params(root, params)


def tiny_pretrained(path: Path, *, pickle_only: bool) -> dict:
    """A local "pretrained" model directory: tokenizer, config and weights (a torch pickle if asked)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhfpipe.models.loading import train_tokenizer

    tokenizer = train_tokenizer(["I hear you, that sounds hard. How are you feeling today?"] * 50, 300)
    tokenizer.save_pretrained(path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if pickle_only:
        config.save_pretrained(path)
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    else:
        model.save_pretrained(path)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny project with good upstream outputs: corpus, prepared data, base model and an (untrained) SFT model."""
    root = tmp_path_factory.mktemp("base")
    write_params(root, tiny_params())
    for name in ("corpus", "prepare", "base_model"):
        assert run_inline(name, root) == 0, name
    shutil.copytree(root / "models/base", root / "models/sft")
    return root


@pytest.fixture
def project(base, tmp_path):
    return Path(shutil.copytree(base, tmp_path / "project"))


# --------------------------------------------------------------------------------------------------
# Bad inputs: (stage, setup, expected text of the error line, or a pattern it matches)
# --------------------------------------------------------------------------------------------------
def data_file(name: str, content: str | bytes, source: str = "multimood"):
    def setup(root: Path):
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        set_params(root, data={"source": source, "path": name})
    return setup


def fixture_copy(fixture: str, name: str, source: str, edit):
    """A format fixture with ``edit(text) -> text`` applied."""
    return data_file(name, edit((FIXTURES / fixture).read_text()), source)


def counsel_chat_with_bad_upvotes(root: Path):
    # the real counsel-chat file (shared data), cut to a few answers, one with a non-numeric upvote count
    with (SHARED_DATA / "counsel_chat.csv").open(newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(6), csv.reader(f))]
    rows[4][rows[0].index("upvotes")] = "many"
    with (root / "counsel.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    set_params(root, data={"source": "counsel_chat", "path": "counsel.csv"})


def truncated_gzip(root: Path):
    (root / "hh.jsonl.gz").write_bytes((FIXTURES / "hh_rlhf.jsonl.gz").read_bytes()[:60])
    set_params(root, data={"source": "hh_rlhf", "path": "hh.jsonl.gz"})


def params(**sections):
    return lambda root: set_params(root, **sections)


def broken_yaml(root: Path):
    text = (root / "params.yaml").read_text()
    (root / "params.yaml").write_text(text.replace("sft:\n", "sft:\n  epochs: [1.0\n", 1))


def corrupt_line(rel: str, lineno: int):
    def setup(root: Path):
        path = root / rel
        lines = path.read_text().splitlines(keepends=True)
        lines[lineno - 1] = lines[lineno - 1][: len(lines[lineno - 1]) // 2] + "\n"
        path.write_text("".join(lines))
    return setup


def truncate(rel: str):
    def setup(root: Path):
        path = root / rel
        path.write_bytes(path.read_bytes()[:1000])
    return setup


def remove(rel: str):
    return lambda root: shutil.rmtree(root / rel)


GOOD_LINE = (FIXTURES / "multimood.jsonl").read_text().splitlines()[0]

BAD_INPUTS = {
    # data files, read by the prepare stage (its previous good outputs must survive)
    "jsonl_bad_json": ("prepare", data_file("bad.jsonl", f"{GOOD_LINE}\n{GOOD_LINE}\n{GOOD_LINE[:40]}\n"),
                       "bad.jsonl:3: not valid JSON"),
    "jsonl_not_utf8": ("prepare", data_file("bad.jsonl", GOOD_LINE.encode() + b"\n\xff\xfe{}\n"),
                       "bad.jsonl:2: not UTF-8"),
    "jsonl_wrong_type": ("prepare", data_file("bad.jsonl", GOOD_LINE + "\n" + GOOD_LINE.replace(
        '"history_chat": []', '"history_chat": 7') + "\n"), "bad.jsonl:2: key 'history_chat' must be list, got int"),
    "jsonl_not_an_object": ("prepare", data_file("bad.jsonl", f"{GOOD_LINE}\n[1, 2]\n"),
                            "bad.jsonl:2: expected a JSON object, got list"),
    "empty_file": ("prepare", data_file("bad.jsonl", "\n\n"), "bad.jsonl: file is empty"),
    "missing_file": ("prepare", params(data={"path": "nowhere.jsonl"}), "nowhere.jsonl: file not found"),
    "unsupported_suffix": ("prepare", data_file("data.xlsx", "x"), "data.xlsx: unsupported file type '.xlsx'"),
    "csv_field_count": ("prepare", fixture_copy("mesc.csv", "mesc.csv", "mesc_csv",
                                                lambda t: t.replace("I don't know.,Client", "I don't know.,Client,x", 1)),
                        "mesc.csv:3: expected 10 fields like the header, got 11"),
    "csv_missing_column": ("prepare", fixture_copy("prompts.csv", "prompts.csv", "prompt_csv",
                                                   lambda t: t.replace("id,prompt,category", "id,question,category", 1)),
                           "prompts.csv:2: missing column 'prompt' (data.prompt_column)"),
    "counsel_chat_bad_upvotes": ("prepare", counsel_chat_with_bad_upvotes,
                                 re.compile(r"counsel\.csv:\d+: key 'upvotes' must be an integer, got 'many'")),
    "preference_missing_key": ("prepare", fixture_copy("orca_dpo.jsonl", "orca.jsonl", "orca_dpo",
                                                       lambda t: t.replace('"chosen": "2 + 2 equals 4.", ', "")),
                               "orca.jsonl:2: missing key 'chosen'"),
    "truncated_gzip": ("prepare", truncated_gzip, "hh.jsonl.gz:1: cannot read"),
    # params, one stage each
    "broken_yaml": ("sft", broken_yaml, re.compile(r"^error: params\.yaml:\d+: not valid YAML")),
    "unknown_source": ("prepare", params(data={"source": "tweets"}), "params.yaml: data.source='tweets': unknown source"),
    "val_fraction": ("prepare", params(data={"val_fraction": 0.7}), "params.yaml: data.val_fraction=0.7: must be in (0, 0.5)"),
    "corpus_not_a_number": ("corpus", params(corpus={"n_dialogues": "many"}),
                            "params.yaml: corpus.n_dialogues='many': must be an integer"),
    "vocab_size": ("base_model", params(tokenizer={"vocab_size": 10}), "params.yaml: tokenizer.vocab_size=10"),
    "infinite_learning_rate": ("sft", params(sft={"learning_rate": float("inf")}),
                               "params.yaml: sft.learning_rate=inf: must be a finite number"),
    "dtype": ("sft", params(model={"dtype": "float16"}), "params.yaml: model.dtype='float16': must be float32 or bfloat16"),
    "rouge_threshold": ("preferences", params(preferences={"rouge_threshold": 2}),
                        "params.yaml: preferences.rouge_threshold=2.0: must be in [0, 1]"),
    "reward_lora_rank": ("reward", params(reward={"lora": {"enabled": True, "r": 0}}), "params.yaml: reward.lora.r=0"),
    "num_threads": ("reward", params(runtime={"num_threads": 0}), "params.yaml: runtime.num_threads=0: must be >= 1"),
    "reward_weights_all_zero": ("ppo", params(ppo={"rewards": [{"name": "reward_model", "weight": 0.0},
                                                               {"name": "empathy", "weight": 0.0}]}),
                                "params.yaml: ppo.rewards=[0.0, 0.0]: weights must not all be 0"),
    "misspelt_key": ("ppo", params(ppo={"kl_coeff": 0.1}), "params.yaml: ppo.kl_coeff=0.1: unknown key"),
    "num_prompts": ("evaluate@sft", params(evaluate={"num_prompts": 0}), "params.yaml: evaluate.num_prompts=0"),
    # models and upstream outputs
    "hub_id_offline": ("base_model", params(model={"name_or_path": "someone/not-cached-model"}),
                       "params.yaml: model.name_or_path='someone/not-cached-model': not a local path, and HF_HUB_OFFLINE=1"),
    "generator_missing": ("preferences", params(preferences={"generator": "./no/such/model"}),
                          "params.yaml: preferences.generator='./no/such/model': no such directory"),
    "upstream_bad_json": ("sft", corrupt_line("data/prepared/sft_train.jsonl", 2),
                          "data/prepared/sft_train.jsonl:2: not valid JSON"),
    "truncated_weights": ("preferences", truncate("models/sft/model.safetensors"), "models/sft: cannot load the model"),
    # the base project has no preference pairs, reward model or PPO policy
    "upstream_missing": ("reward", lambda root: None, "data/preferences/train.jsonl: file not found"),
    "reward_model_missing": ("ppo", lambda root: None, "models/reward: no such directory"),
    "policy_missing": ("evaluate@ppo", lambda root: None, "models/ppo: no such directory"),
    "sft_model_missing": ("preferences", remove("models/sft"), "models/sft: no such directory"),
    "grpo_reward_model_missing": ("grpo", lambda root: None, "models/reward: not a reward model directory (no config.json)"),
    "compare_without_evaluations": ("compare", lambda root: None, "metrics/eval: no evaluation metrics"),
    "child_sft_batch_size": ("child_sft", params(dialogue={"child_sft": {"batch_size": 0}}),
                             "params.yaml: dialogue.child_sft.batch_size=0"),
    "child_model_missing": ("dialogue_ppo", lambda root: None, "models/child_sft: no such directory"),
    "moodpo_reward_model_missing": ("moodpo_warmup", lambda root: None,
                                    "models/reward: not a reward model directory (no config.json)"),
    "moodpo_warmup_policy_missing": ("moodpo@1", lambda root: None, "models/moodpo_warmup: no such directory"),
    "moodpo_warmup_samples": ("moodpo_warmup", params(moodpo={"warmup": {"samples": 1}}),
                              "params.yaml: moodpo.warmup.samples=1"),
    "moodpo_policy_missing": ("moodpo_eval", lambda root: None, "models/moodpo_2: no such directory"),
}


def assert_one_error_line(stderr: str, expected: str | re.Pattern) -> None:
    """One ``error:`` line, the last one written (progress bars may come before it), and no traceback."""
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert expected.search(errors[0]) if isinstance(expected, re.Pattern) else expected in errors[0], errors[0]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_in_one_line_and_writes_nothing(project, case, capfd, monkeypatch):
    stage, setup, expected = BAD_INPUTS[case]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    setup(project)
    _, _, outs = stage_spec(stage)
    before = snapshot(project, outs)
    capfd.readouterr()
    code = run_inline(stage, project)
    stderr = capfd.readouterr().err
    assert code == 2, stderr[-3000:]
    assert_one_error_line(stderr, expected)
    assert snapshot(project, outs) == before


def test_bad_inputs_cover_every_stage_and_both_output_checks(base):
    """At least 20 cases over every stage; some stages have previous good outputs that must be kept."""
    assert len(BAD_INPUTS) >= 20
    stages = {stage for stage, _, _ in BAD_INPUTS.values()}
    declared = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    assert len(declared) >= 14 and {s.partition("@")[0] for s in stages} == declared
    existing = {s for s in stages if all((base / out).exists() for out in stage_spec(s)[2] if not out.startswith("metrics/"))}
    assert {"prepare", "base_model", "sft"} <= existing and {"preferences", "reward", "ppo"}.isdisjoint(existing)


@pytest.mark.parametrize("section, values, key", [
    ("ppo", {"rewards": [{"name": "reward_model", "weight": float("nan")}]}, "ppo.rewards[0].weight"),
    ("reward", {"epochs": float("inf")}, "reward.epochs"),
    ("ppo", {"kl_coef": float("inf")}, "ppo.kl_coef"),
])
def test_non_finite_numbers_are_refused(tmp_path, section, values, key):
    from rlhfpipe.config import ParamError, load_section

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    merge(params[section], values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamError) as err:
        load_section(section, tmp_path / "params.yaml")
    assert err.value.key == key and err.value.rule == "must be a finite number"


# --------------------------------------------------------------------------------------------------
# Pickles, remote code, the hub
# --------------------------------------------------------------------------------------------------
def test_pickle_only_model_is_refused_unless_allowed(project, capfd):
    tiny_pretrained(project / "pickled", pickle_only=True)
    local = str(project / "pickled")
    set_params(project, model={"name_or_path": local})
    outs = stage_spec("base_model")[2]
    before = snapshot(project, outs)
    capfd.readouterr()
    assert run_inline("base_model", project) == 2
    assert_one_error_line(capfd.readouterr().err, f"params.yaml: model.name_or_path={local!r}: only pickle weights "
                                                  "(pytorch_model.bin), which can run code when loaded")
    assert snapshot(project, outs) == before

    set_params(project, model={"name_or_path": ""}, preferences={"generator": "pickled"})
    assert run_inline("preferences", project) == 2
    assert_one_error_line(capfd.readouterr().err, "params.yaml: preferences.generator='pickled': only pickle weights")
    assert not (project / "data/preferences").exists()

    set_params(project, model={"allow_pickle": True})
    assert run_inline("preferences", project) == 0, capfd.readouterr().err[-3000:]
    assert (project / "data/preferences/train.jsonl").is_file()


def test_allowed_pickle_loads_the_saved_weights(tmp_path):
    import torch

    from rlhfpipe.models.loading import load_causal_lm, load_tokenizer

    weights = tiny_pretrained(tmp_path / "m", pickle_only=True)
    model = load_causal_lm(str(tmp_path / "m"), load_tokenizer(tmp_path / "m"), allow_pickle=True, key="model.name_or_path")
    state = model.state_dict()
    assert all(torch.equal(state[name], value) for name, value in weights.items())


def test_default_params_refuse_pickles_and_remote_code():
    from rlhfpipe.config import load_section

    model = load_section("model", REPO / "params.yaml")
    assert model.allow_pickle is False and model.trust_remote_code is False


def test_code_never_unpickles_or_runs_remote_code():
    """torch.load only with weights_only=True, no pickle module, no remote code or pickle weights forced on."""
    sources = [*(REPO / "rlhfpipe").rglob("*.py"), *(REPO / "stages").glob("*.py")]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), path
        assert not re.search(r"trust_remote_code\s*=\s*True|use_safetensors\s*=\s*False|weights_only\s*=\s*False", text), path


@pytest.mark.parametrize("value, expected", [
    ("someone/not-cached-model", "HF_HUB_OFFLINE=1 forbids downloading it"),
    ("../no/such/dir", "no such directory, and not a hub id"),
])
def test_hub_guard_names_the_key(value, expected, monkeypatch):
    from rlhfpipe.errors import PipelineError
    from rlhfpipe.models.loading import hub_guard

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PipelineError) as err:
        hub_guard(value, "preferences.generator")
    assert str(err.value).startswith(f"params.yaml: preferences.generator={value!r}: ") and expected in str(err.value)


# --------------------------------------------------------------------------------------------------
# Resume plumbing of the HF Trainer stages
# --------------------------------------------------------------------------------------------------
def test_resume_skips_cut_short_checkpoints_and_foreign_ones(tmp_path, monkeypatch):
    from rlhfpipe.training.common import checkpoint_dir

    monkeypatch.chdir(tmp_path)
    directory, resume = checkpoint_dir("sft", "key-a")
    assert resume is None
    for step, complete in ((2, True), (4, True), (6, False)):  # 6: killed while being written
        (directory / f"checkpoint-{step}").mkdir()
        (directory / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
        if complete:
            (directory / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    directory, resume = checkpoint_dir("sft", "key-a")
    assert resume == directory / "checkpoint-4"
    assert sorted(p.name for p in directory.glob("checkpoint-*")) == ["checkpoint-4"]
    _, resume = checkpoint_dir("sft", "key-b")  # other params or inputs: never resumed
    assert resume is None and not list(directory.glob("checkpoint-*"))


class RecordingLive:
    def __init__(self):
        self.rows, self.row = [], {}

    def log_metric(self, name, value, plot=True):
        self.row[name] = value

    def next_step(self):
        self.rows.append(self.row)
        self.row = {}


def test_resumed_curves_equal_uninterrupted_ones():
    from transformers import TrainerControl, TrainerState

    from rlhfpipe.training.common import LiveCallback

    logs = [{"loss": 3.0 - step / 10, "learning_rate": 0.01, "epoch": step / 10} for step in range(1, 7)]

    def train(callback, state, steps):
        callback.on_train_begin(None, state, TrainerControl())
        for step in steps:
            state.global_step = step
            state.log_history.append({**logs[step - 1], "step": step})
            callback.on_log(None, state, TrainerControl(), logs=logs[step - 1])

    whole = RecordingLive()
    train(LiveCallback(whole, ("loss", "learning_rate")), TrainerState(), range(1, 7))
    killed = TrainerState()
    train(LiveCallback(RecordingLive(), ("loss", "learning_rate")), killed, range(1, 4))
    resumed = RecordingLive()
    state = TrainerState(global_step=3, log_history=list(killed.log_history))  # as restored from checkpoint-3
    train(LiveCallback(resumed, ("loss", "learning_rate")), state, range(4, 7))
    assert resumed.rows == whole.rows and len(whole.rows) == 6


# --------------------------------------------------------------------------------------------------
# SIGKILL mid-training, then dvc repro: same outputs as an uninterrupted run
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_and_resumed_second_build_gives_every_md5_of_the_first(killed_build, pipeline):
    logs, kept, final = killed_build.logs, killed_build.kept, out_md5s(killed_build.repo)
    assert {s.split(":")[0] for s in kept["sft"]} == {"corpus", "prepare", "base_model"}
    # each killed stage resumed from its checkpoint on the next repro, none restarted from scratch
    assert "sft: resuming from checkpoints/sft/checkpoint-" in stage_output(logs["reward"], "sft")
    assert "reward: resuming from checkpoints/reward/checkpoint-" in stage_output(logs["ppo"], "reward")
    assert "ppo: resuming at update 1 of 2" in stage_output(logs["end"], "ppo")
    assert "grpo: resuming from checkpoints/grpo/checkpoint-" in stage_output(logs["end"], "grpo")
    for name in ("corpus", "prepare", "base_model", "sft", "reward", "child_sft"):
        assert not stage_output(logs["end"], name), f"{name} ran again after it had finished"
    # upstream outputs keep the md5 they had when the stage downstream of them was killed
    for outs in kept.values():
        assert {k: final[k] for k in outs} == outs
    assert not list((killed_build.repo / "checkpoints").glob("*/*"))
    # the session's uninterrupted build gave the very same outputs (weights, curves, samples, metrics) in every
    # stage: the graph is deterministic, and a resumed stage ends where an uninterrupted one does
    assert len(pipeline.md5s) >= 17 and final == pipeline.md5s


@pytest.mark.slow
def test_outputs_hold_no_absolute_paths(pipeline):
    repo = pipeline.repo
    needles = {str(repo).encode(), str(repo.resolve()).encode()}
    if len(Path.home().parts) > 1:
        needles.add(str(Path.home()).encode())
    files = [repo / "dvc.lock", *(p for top in ("data", "models", "metrics") for p in (repo / top).rglob("*")
                                  if p.is_file() and p.suffix != ".safetensors")]
    assert len(files) > 40
    for path in files:
        content = path.read_bytes()
        assert not [n for n in needles if n in content], path
