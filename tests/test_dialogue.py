"""Child-teacher dialogue PPO: windows, roles, the window reward, params, the self-test, kill and resume."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, quick_params, stage_output, tiny_params, write_params
from conftest import out_md5s, params_config
from rlhfpipe.config import CohesionWeights, load_section, ParamError, RewardTerm
from rlhfpipe.dialogue.windows import as_prompt, content_seed, DialogueReward, read_windows, speaker_turns, Teacher
from rlhfpipe.errors import PipelineError
from rlhfpipe.rewards.cohesion import cohesion_rewards
from rlhfpipe.rewards.registry import RewardRegistry
from rlhfpipe.rewards.wordlists import CONNECTIVES


def dialogue(dialogue_id: str, *turns: tuple[str, str]) -> dict:
    return {"dialogue_id": dialogue_id, "turns": [{"role": r, "content": c} for r, c in turns]}


DIALOGUES = [
    dialogue("d1", ("user", "I lost my job last week and I feel awful about it."),
             ("assistant", "Losing a job is hard. What worries you most about it?"),
             ("user", "Mostly the rent, because I cannot pay it next month."),
             ("assistant", "The rent is a real worry. Could you ask your landlord for more time?")),
    dialogue("d2", ("user", "Hi."), ("assistant", "Hello.")),  # 2 words: below min_words
    dialogue("d3", ("system", "Be kind."), ("assistant", "How was your day, and what is on your mind?"),
             ("user", "Long."), ("user", "My sister and I had a fight again about money."),
             ("assistant", "Fights about money with family hurt. What happened this time?")),
]


def write_dialogues(path: Path, rows: list[dict] = DIALOGUES) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- windows and roles ----------------------------------------------------------------------------
def test_speaker_turns_drop_system_and_merge_one_speaker():
    assert speaker_turns(DIALOGUES[2]) == [
        ("assistant", "How was your day, and what is on your mind?"),
        ("user", "Long. My sister and I had a fight again about money."),
        ("assistant", "Fights about money with family hurt. What happened this time?")]


def test_windows_are_child_turns_after_context_in_dialogues_of_allowed_length(tmp_path):
    windows, kept = read_windows(write_dialogues(tmp_path / "d.jsonl"), 20, 400, 2)
    assert kept == 2  # d2 has 2 words
    # d1: the user turn at index 2 (index 0 has no context); d3: the merged user turn after one assistant turn
    assert [(w.dialogue_id, len(w.context)) for w in windows] == [("d1", 2), ("d3", 1)]
    assert windows[0].context[-1].startswith("Losing a job") and windows[0].reference.startswith("Mostly the rent")
    assert [len(w.context) for w in read_windows(tmp_path / "d.jsonl", 20, 400, 1)[0]] == [1, 1]


def test_switchboard_dialogues_give_windows_for_caller_a(tmp_path):
    from rlhfpipe.data.formats import read_records

    fixture = REPO / "tests/fixtures/formats/switchboard"
    records = read_records("switchboard", str(fixture), params_config("data", min_words=5, max_words=400))
    windows, kept = read_windows(write_dialogues(tmp_path / "sw.jsonl", [d.to_json() for d in records.dialogues]),
                                 5, 400, 2)
    # sw4325: A, B, A, B -> the child (caller A) answers B once, after both earlier turns
    assert kept == 1 and len(windows) == 1
    assert windows[0].context == ["Okay. So, what kind of experience do you, do you have with child care?",
                                  "I think, we have two kids. and we use a day care"]
    assert windows[0].reference == "Uh-huh."


def test_no_window_is_one_clear_error(tmp_path):
    with pytest.raises(PipelineError, match=r"d\.jsonl: no user turn .*\[200, 400\] words .*dialogue\.min_words"):
        read_windows(write_dialogues(tmp_path / "d.jsonl"), 200, 400, 2)


def test_the_writer_is_always_the_assistant():
    assert [m["role"] for m in as_prompt(["a", "b", "c"])] == ["user", "assistant", "user"]
    assert [m["role"] for m in as_prompt(["a", "b"])] == ["assistant", "user"]


def test_content_seed_is_deterministic_and_depends_on_every_turn():
    windows = [["I feel sad.", "Why?"], ["Work."]]
    assert content_seed(0, windows) == content_seed(0, [list(w) for w in windows])
    assert content_seed(0, windows) != content_seed(1, windows)
    assert content_seed(0, windows) != content_seed(0, [["I feel sad.", "Why not?"], ["Work."]])


# --- the window reward ----------------------------------------------------------------------------
class EchoTeacher:
    """Answers each window with a fixed turn; records what it was shown."""

    def __init__(self):
        self.seen = []

    def reply(self, windows):
        self.seen.append(windows)
        return ["Your job matters, and the rent too." for _ in windows]


def test_cohesion_scores_the_window_and_other_terms_the_child_turn():
    teacher = EchoTeacher()
    weights = params_config("cohesion", mattr=0.0, adjacent_overlap_sentence=0.0, connectives_all=0.0, givenness=0.0)
    reward = DialogueReward(teacher, RewardRegistry(cohesion_weights=weights))
    prompts = [as_prompt(["I lost my job.", "What worries you?"])]
    child = ["The rent and my job."]
    total, parts = reward.combine([RewardTerm("cohesion", 1.0), RewardTerm("brevity", 2.0)], prompts, child)
    assert teacher.seen == [[["I lost my job.", "What worries you?", "The rent and my job."]]]
    # turn overlap alone: {lost, job} -> {worrie}: 0; {worrie} -> {rent, job}: 0; {rent, job} -> {job, matter, rent}: 1
    assert float(parts["cohesion"][0]) == pytest.approx(1 / 3)
    assert float(parts["brevity"][0]) == pytest.approx(1 - 5 / 40)  # the child's 5 words, not the teacher's
    assert float(total[0]) == pytest.approx(1 / 3 + 2 * (1 - 5 / 40))


def test_an_empty_child_turn_earns_no_cohesion():
    # skipped by the overlap indices, an empty turn would let the teacher's echo count as a reply to the context
    reward = DialogueReward(EchoTeacher(), RewardRegistry(cohesion_weights=params_config("cohesion")))
    prompts = [as_prompt(["I lost my job.", "Your job and the rent worry you."])] * 3
    _, parts = reward.combine([RewardTerm("cohesion", 1.0)], prompts, ["", "...", "The rent, yes."])
    assert parts["cohesion"][:2].tolist() == [0.0, 0.0] and float(parts["cohesion"][2]) > 0


def test_registry_cohesion_uses_the_given_weights():
    prompts, responses = [[{"role": "user", "content": "the cat saw the dog"}]], ["so"]
    only_mattr = params_config("cohesion", adjacent_overlap_turn=0.0, adjacent_overlap_sentence=0.0, connectives_all=0.0,
                                 givenness=0.0)
    mattr = 5 / 6  # by hand: 6 tokens, 5 types (the x2), under the 50-token window
    assert float(RewardRegistry(cohesion_weights=only_mattr).score("cohesion", prompts, responses)[0]) == pytest.approx(mattr)
    assert RewardRegistry(cohesion_weights=params_config("cohesion")).score("cohesion", prompts, responses)[0] != pytest.approx(mattr)


def test_cohesion_reward_bounded_and_deterministic_on_random_dialogues():
    rng = random.Random(0)
    vocab = ["job", "rent", "I", "you", "feel", "sad", "it", "the", "a", "money", "sister", "!", ".", "?",
             *[p for ps in CONNECTIVES.values() for p in ps]]
    windows = [[" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(rng.randint(0, 5))]
               for _ in range(200)]
    for weights in (params_config("cohesion"), params_config("cohesion", mattr=0.0, adjacent_overlap_turn=0.0, adjacent_overlap_sentence=0.0,
                                                       givenness=0.0, connectives_all=3.0)):
        scores = cohesion_rewards(windows, weights)
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == cohesion_rewards([list(w) for w in windows], weights)


# --- params ---------------------------------------------------------------------------------------
def test_default_params_section_validates():
    cfg = load_section("dialogue", REPO / "params.yaml")
    assert cfg.ppo.rewards == [RewardTerm("cohesion", 1.0)] and cfg.cohesion == params_config("cohesion")


def test_every_cohesion_weight_names_an_index():
    from dataclasses import fields

    from rlhfpipe.rewards.cohesion import INDEX_KEYS

    assert {f.name for f in fields(CohesionWeights)} <= set(INDEX_KEYS)


def test_updates_follow_windows_epochs_and_batch():
    cfg = params_config("dialogue", epochs=0.5)
    assert cfg.ppo_for(2746).num_updates == 2746 // 2 // cfg.ppo.batch_size
    assert cfg.ppo_for(2746).total_episodes == cfg.ppo_for(2746).num_updates * cfg.ppo.batch_size
    with pytest.raises(ParamError) as err:
        cfg.ppo_for(10)
    assert err.value.key == "dialogue.epochs"


@pytest.mark.parametrize("values, key", [
    ({"ppo": {"total_episodes": 64}}, "dialogue.ppo.total_episodes"),
    ({"ppo": {"rewards": [{"name": "reward_model", "weight": 1.0}]}}, "dialogue.ppo.rewards[0].name"),
    ({"cohesion": {"givenness": -1.0}}, "dialogue.cohesion.givenness"),
    ({"child": {"hidden_size": 30, "num_heads": 4}}, "dialogue.child.num_heads"),
    ({"context_turns": 0}, "dialogue.context_turns"),
])
def test_bad_dialogue_params_name_their_key(tmp_path, values, key):
    params = quick_params()
    from conftest import merge

    merge(params["dialogue"], values)
    write_params(tmp_path, params)
    with pytest.raises(ParamError) as err:
        load_section("dialogue", tmp_path / "params.yaml")
    assert err.value.key == key


# --- tiny models: the teacher and the self-test ---------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A project folder with a held-out split, a tiny child and a tiny teacher, and tiny params."""
    from rlhfpipe.models.loading import build_causal_lm, save_model, train_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    (root / "data/prepared").mkdir(parents=True)
    write_dialogues(root / "data/prepared/dialogues_test.jsonl")
    tokenizer = train_tokenizer([t["content"] for d in DIALOGUES for t in d["turns"]] * 20, 300)
    for name, seed in (("child_sft", 0), ("sft", 1)):
        model = build_causal_lm(params_config("model", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                            max_position_embeddings=256, seed=seed), tokenizer)
        save_model(model, tokenizer, root / "models" / name)
    write_params(root, tiny_params({"runtime": {"num_threads": 1}}))
    return root


def test_teacher_reply_is_seeded_by_the_window(tiny):
    from rlhfpipe.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(tiny / "models/sft")
    teacher = Teacher(load_causal_lm(str(tiny / "models/sft"), tokenizer), tokenizer, temperature=1.0,
                      max_new_tokens=8, seed=0)
    windows = [["I lost my job.", "What worries you?", "The rent."], ["Hi.", "Hello there."]]
    first = teacher.reply(windows)
    assert len(first) == 2 and first == teacher.reply([list(w) for w in windows])


def self_test(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rlhfpipe.dialogue.check", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_self_test_passes_on_tiny_models(tiny):
    proc = self_test(tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok: ") == 5 and "dialogue check passed" in proc.stdout


def test_self_test_stops_at_the_first_failure_in_one_line(tiny, tmp_path):
    broken = tmp_path / "teacher"
    broken.mkdir()
    for f in (tiny / "models/sft").iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:200] if f.suffix == ".safetensors" else f.read_bytes())
    proc = self_test(tiny, "models/child_sft", str(broken), "data/prepared")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: dialogue check failed at teacher: {broken}: cannot load the model"
                      + errors[0].split("cannot load the model", 1)[1]], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "ok: child" not in proc.stdout


@pytest.mark.parametrize("script, args, params, expected", [
    ("child_sft", ["data/prepared", "models/sft", "models/child_sft_new", "metrics/child_sft.json"],
     {"min_words": 300}, "data/prepared/dialogues_train.jsonl: no user turn after another turn in a dialogue of "
                         "[300, 400] words (params dialogue.min_words, dialogue.max_words)"),
    ("dialogue_ppo", ["data/prepared", "models/child_sft", "models/sft", "models/dialogue_ppo",
                      "metrics/dialogue_ppo.json", "metrics/train/dialogue_ppo", "data/dialogue_ppo/samples.jsonl"],
     {}, "params.yaml: dialogue.epochs=0.75: gives no PPO update: 2 training windows x epochs < "
         "dialogue.ppo.batch_size=8"),
])
def test_stages_stop_in_one_line_and_write_nothing(tiny, tmp_path, script, args, params, expected):
    import shutil

    root = Path(shutil.copytree(tiny, tmp_path / "project"))
    write_dialogues(root / "data/prepared/dialogues_train.jsonl")
    write_dialogues(root / "data/prepared/dialogues_val.jsonl")
    from conftest import merge

    values = tiny_params({"runtime": {"num_threads": 1}})
    merge(values["dialogue"], params)
    write_params(root, values)
    proc = subprocess.run([sys.executable, str(REPO / "stages" / f"{script}.py"), *args], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [f"error: {expected}"]
    assert not (root / args[-2 if script == "child_sft" else 3]).exists() and not (root / "metrics").exists()


# --- kill and resume through dvc repro ------------------------------------------------------------
@pytest.mark.slow
def test_killed_dialogue_ppo_resumes_from_its_last_checkpoint(killed_build, pipeline):
    repo, info = killed_build.repo, killed_build.dialogue_checkpoint
    assert "Running stage 'dialogue_ppo'" in killed_build.logs["dialogue_ppo"]
    assert info["step"] >= 1 and info["episodes"] == info["step"] * 8 and isinstance(info["mean_reward"], float)
    second = stage_output(killed_build.logs["end"], "dialogue_ppo")
    assert f"ppo: resuming at update {info['step']} of " in second
    metrics = json.loads((repo / "metrics/dialogue_ppo.json").read_text())
    assert metrics["num_updates"] == metrics["episodes"] // 8 and metrics["checkpoint_interval"] >= 1
    assert 0 <= metrics["cohesion_before"] <= 1 and 0 <= metrics["cohesion_after"] <= 1
    assert (repo / "models/dialogue_ppo/model.safetensors").is_file()
    resumed = out_md5s(repo)
    assert {"dialogue_ppo:models/dialogue_ppo", "dialogue_ppo:data/dialogue_ppo"} <= set(resumed)
    assert {k: resumed[k] for k in resumed if k.startswith("dialogue_ppo:")} == {
        k: pipeline.md5s[k] for k in pipeline.md5s if k.startswith("dialogue_ppo:")}  # same weights, samples, curves
