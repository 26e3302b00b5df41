"""The real stages through `dvc repro` on a tiny config, in temporary copies of the repository."""

import json
import re

import pytest
import yaml

from conftest import run, stage, write_params
from conftest import out_md5s, pipeline_copy

pytestmark = pytest.mark.slow

STAGES = ["corpus", "prepare", "base_model", "sft", "preferences", "reward", "ppo", "grpo", "evaluate@sft",
          "evaluate@ppo", "evaluate@grpo", "compare", "child_sft", "dialogue_ppo", "moodpo_warmup", "moodpo@1", "moodpo@2", "moodpo_eval"]


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


@pytest.fixture(scope="module")
def built(pipeline, tmp_path_factory):
    """A copy of the session's built pipeline: the tests below change its params."""
    return pipeline_copy(pipeline, tmp_path_factory.mktemp("e2e") / "repo"), pipeline.output


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
    for policy in ("ppo", "grpo"):  # the summary carries each evaluation's numbers, not a shortcut's
        evaluated = json.loads((repo / f"metrics/eval/{policy}.json").read_text())
        assert {k: summary[policy][k] for k in evaluated if k in summary[policy]} == {
            k: v for k, v in evaluated.items() if k in summary[policy]}
    assert summary["ppo"]["kl_to_sft"] > 0  # PPO's two updates moved it off the SFT policy
    assert json.loads((repo / "metrics/grpo.json").read_text())["steps"] == 6
    assert (repo / "metrics/train/grpo/plots/metrics/train/reward.tsv").is_file()
    # held-out accuracy by an independent count over the stored test pairs, scored by the saved reward model
    from rlhfpipe.rewards.reward_model import RewardModel

    reward = json.loads((repo / "metrics/reward.json").read_text())
    rows = [json.loads(line) for line in (repo / "data/preferences/test.jsonl").read_text().splitlines()]
    rm = RewardModel(repo / "models/reward")
    prompts = [r["prompt"] for r in rows]
    chosen = rm.score(prompts, [r["chosen"][0]["content"] for r in rows])
    rejected = rm.score(prompts, [r["rejected"][0]["content"] for r in rows])
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    assert reward["test_pairs"] == len(rows) and reward["accuracy"] == pytest.approx(float(wins.mean()), abs=1e-4)
    assert not list(repo.rglob("*.pkl")) and not list((repo / "models").rglob("*.bin"))
    lock = (repo / "dvc.lock").read_text()
    assert str(repo) not in lock  # no absolute paths in tracked metadata


def test_second_repro_runs_nothing(built):
    repo, _ = built
    proc = run(["dvc", "repro"], cwd=repo)
    assert stages_run(proc.stdout) == []


def test_ppo_param_reruns_only_ppo_and_downstream(built, pipeline):
    repo, _ = built
    proc = run(["dvc", "exp", "run", "-S", "ppo.kl_coef=0.2"], cwd=repo)
    ran = set(stages_run(proc.stdout))
    assert {"ppo", "evaluate@ppo", "compare"} <= ran
    assert not ran & {"corpus", "prepare", "base_model", "sft", "preferences", "reward", "evaluate@sft", "grpo",
                      "evaluate@grpo"}
    shown = run(["dvc", "exp", "show", "--no-pager", "--md"], cwd=repo).stdout
    assert "ppo.kl_coef" in shown or "kl_coef" in shown
    # the new coefficient reached training: the first update's KL penalty is exactly zero (policy = reference), so
    # the second update is the first whose advantages carry kl_coef, and it gives other weights; the diff reports
    # the experiment's numbers as its files hold them (the copy's git HEAD holds no metrics)
    before = json.loads((pipeline.repo / "metrics/ppo.json").read_text())
    after = json.loads((repo / "metrics/ppo.json").read_text())
    assert before["final_kl_coef"] == 0.1 and after["final_kl_coef"] == 0.2
    assert before["updates"] == 2 and out_md5s(repo)["ppo:models/ppo"] != pipeline.md5s["ppo:models/ppo"]
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], cwd=repo).stdout)["metrics/ppo.json"]
    assert diff["final_kl_coef"]["new"] == 0.2


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
