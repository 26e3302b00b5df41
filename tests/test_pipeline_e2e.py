"""The real stages through `dvc repro` on a tiny config, in temporary copies of the repository."""

import json
import re

import pytest
import yaml

from conftest import copy_repo, run, stage, tiny_params, write_params

pytestmark = pytest.mark.slow

STAGES = ["corpus", "prepare", "base_model", "sft", "preferences", "reward", "ppo", "grpo", "evaluate@sft",
          "evaluate@ppo", "evaluate@grpo", "compare", "child_sft", "dialogue_ppo", "moodpo@1", "moodpo@2", "moodpo_eval"]


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def out_md5s(repo) -> dict[str, str]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {f"{name}:{o['path']}": o["md5"] for name, s in lock["stages"].items() for o in s.get("outs", [])}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("e2e") / "repo")
    write_params(repo, tiny_params())
    proc = run(["dvc", "repro"], cwd=repo)
    return repo, proc.stdout


def test_repro_builds_every_output(built):
    repo, output = built
    assert sorted(stages_run(output)) == sorted(STAGES)
    for path in ("models/sft/model.safetensors", "models/reward/model.safetensors", "models/reward/reward_stats.json",
                 "models/ppo/model.safetensors", "models/grpo/model.safetensors", "data/preferences/train.jsonl",
                 "metrics/summary.md",
                 "metrics/ranked_samples.md", "metrics/ppo_training.png", "metrics/policies.csv"):
        assert (repo / path).is_file(), path
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert set(summary) == {"sft", "ppo", "grpo"}
    for key in ("reward_mean", "win_rate_vs_sft", "empathy_ratio", "rouge_l", "kl_to_sft", "distinct_2"):
        assert isinstance(summary["ppo"][key], float), key
    assert summary["sft"]["kl_to_sft"] == 0.0 and summary["sft"]["win_rate_vs_sft"] == 0.5
    reward = json.loads((repo / "metrics/reward.json").read_text())
    assert 0.0 <= reward["accuracy"] <= 1.0
    assert not list(repo.rglob("*.pkl")) and not list((repo / "models").rglob("*.bin"))
    lock = (repo / "dvc.lock").read_text()
    assert str(repo) not in lock  # no absolute paths in tracked metadata


def test_second_repro_runs_nothing(built):
    repo, _ = built
    proc = run(["dvc", "repro"], cwd=repo)
    assert stages_run(proc.stdout) == []


def test_ppo_param_reruns_only_ppo_and_downstream(built):
    repo, _ = built
    proc = run(["dvc", "exp", "run", "-S", "ppo.kl_coef=0.2"], cwd=repo)
    ran = set(stages_run(proc.stdout))
    assert {"ppo", "evaluate@ppo", "compare"} <= ran
    assert not ran & {"corpus", "prepare", "base_model", "sft", "preferences", "reward", "evaluate@sft", "grpo",
                      "evaluate@grpo"}
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], cwd=repo).stdout
    assert "ppo.kl_coef" in shown or "kl_coef" in shown
    diff = run(["dvc", "metrics", "diff", "--md"], cwd=repo).stdout
    assert "metrics/eval/ppo.json" in diff


def test_grpo_param_reruns_only_grpo_and_downstream(built):
    repo, _ = built
    proc = run(["dvc", "exp", "run", "-S", "grpo.beta=0.1"], cwd=repo)
    ran = set(stages_run(proc.stdout))
    assert ran == {"grpo", "evaluate@grpo", "compare"}
    grpo = json.loads((repo / "metrics/grpo.json").read_text())
    assert grpo["steps"] == 2
    assert (repo / "metrics/train/grpo/plots/metrics/train/reward.tsv").is_file()


def test_reward_param_reruns_reward_and_downstream_only(built):
    repo, _ = built
    proc = run(["dvc", "exp", "run", "-S", "reward.margin=0.5"], cwd=repo)
    ran = set(stages_run(proc.stdout))
    assert {"reward", "ppo", "grpo", "evaluate@sft", "evaluate@ppo", "evaluate@grpo", "compare", "moodpo@1",
            "moodpo@2", "moodpo_eval"} <= ran
    assert not ran & {"corpus", "prepare", "base_model", "sft", "preferences", "child_sft", "dialogue_ppo"}


def test_bad_param_fails_with_one_line_and_keeps_outputs(built):
    repo, _ = built
    before = (repo / "models/ppo/model.safetensors").read_bytes()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["ppo"]["cliprange"] = 1.5
    write_params(repo, params)
    proc = stage("ppo", "data/prepared", "models/sft", "models/reward", "models/ppo", "metrics/ppo.json",
                 "metrics/train/ppo", "metrics/ppo_training.png", cwd=repo)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: params.yaml: ppo.cliprange=1.5: must be in (0, 1)"]
    assert (repo / "models/ppo/model.safetensors").read_bytes() == before


def test_two_clean_runs_give_identical_hashes(built, tmp_path):
    repo, _ = built
    run(["git", "checkout", "--", "params.yaml"], cwd=repo)
    write_params(repo, tiny_params())
    run(["dvc", "repro"], cwd=repo)
    other = copy_repo(tmp_path / "again")
    write_params(other, tiny_params())
    run(["dvc", "repro"], cwd=other)
    assert out_md5s(repo) == out_md5s(other)
