"""Seed aggregation on fixed hand-made experiments: mean ± std and the seeds meeting each target."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO
from rlhfpipe.errors import PipelineError
from rlhfpipe.evaluation.seeds import (aggregate, experiment_metrics, experiments_from_show, mean_std,
                                       seed_table_markdown)


def experiment(gain, kl, ppo_emp, ppo_flags, grpo_reward, grpo_flags, ci_lows, hv_gain, coh_before, coh_after,
               coh_ci_low, words_ratio) -> dict[str, dict]:
    return {
        "metrics/summary.json": {
            "sft": {"empathy_ratio": 0.25, "reward_mean": 1.0, "monitors": {"flagged": 0}},
            "ppo": {"reward_gain_sft_std": gain, "kl_to_sft": kl, "empathy_ratio": ppo_emp,
                    "monitors": {"flagged": ppo_flags}},
            "grpo": {"reward_mean": grpo_reward, "monitors": {"flagged": grpo_flags}}},
        "metrics/moodpo.json": {
            "hypervolume_gain_over_sft": hv_gain,
            "moodpo": {"responsiveness": {k: {"difference_ci95": [low, low + 1.0]} for k, low in ci_lows.items()}}},
        "metrics/dialogue_ppo.json": {"cohesion_before": coh_before, "cohesion_after": coh_after,
                                      "cohesion_gain_ci95": [coh_ci_low, coh_ci_low + 0.02],
                                      "child_words_ratio": words_ratio},
    }


EXPERIMENTS = {
    # meets every target
    "seed-0": experiment(1.2, 4.0, 0.30, 0, 1.5, 0, {"rm": 0.1, "brevity": 0.05}, 0.2, 0.40, 0.43, 0.01, 0.9),
    # PPO misses the gain; GRPO flagged; MOODPO brevity interval spans 0; dialogue words shrink to 0.5
    "seed-1": experiment(0.6, 5.0, 0.30, 0, 1.2, 1, {"rm": 0.1, "brevity": -0.01}, 0.1, 0.40, 0.45, 0.02, 0.5),
    # PPO has the gain but a length collapse flag; MOODPO hypervolume below SFT's
    "seed-2": experiment(1.5, 3.0, 0.20, 1, 0.9, 0, {"rm": 0.2, "brevity": 0.1}, -0.3, 0.40, 0.41, 0.001, 0.8),
}


def test_mean_std_by_hand():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # squares 1, 0, 1 over n - 1 = 2
    assert mean_std([5.0]) == (5.0, None)


def test_aggregate_counts_the_seeds_meeting_each_target():
    result = aggregate(EXPERIMENTS)
    met = list(result["met"].values())
    assert met[0] == ["seed-0"]                      # PPO
    assert met[1] == ["seed-0"]                      # GRPO: seed-1 flagged, seed-2 below SFT's 1.0
    assert met[2] == ["seed-0"]                      # MOODPO
    assert met[3] == ["seed-0", "seed-2"]            # dialogue: ratio 0.8 is enough, seed-1's 0.5 is not
    gain_mean, gain_std = result["stats"]["ppo_gain_sft_std"]
    assert gain_mean == pytest.approx(1.1)           # (1.2 + 0.6 + 1.5) / 3
    # deviations 0.1, -0.5, 0.4: squares 0.01 + 0.25 + 0.16 = 0.42, / 2 = 0.21
    assert gain_std == pytest.approx(math.sqrt(0.21))
    assert result["stats"]["grpo_reward_gain"][0] == pytest.approx((0.5 + 0.2 - 0.1) / 3)
    assert result["stats"]["dialogue_cohesion_gain"][0] == pytest.approx((0.03 + 0.05 + 0.01) / 3)
    assert result["stats"]["moodpo_min_ci_low"][0] == pytest.approx((0.05 - 0.01 + 0.1) / 3)
    # means: gain 1.1 >= 1, KL 4 <= 6, empathy 0.2667 > 0.25, but seed-2 was flagged
    assert result["ppo_mean_meets"] is False
    unflagged = {k: v for k, v in EXPERIMENTS.items() if k != "seed-2"}
    assert aggregate(unflagged)["ppo_mean_meets"] is False  # gain mean 0.9 < 1.0


def test_markdown_table():
    page = seed_table_markdown(aggregate(EXPERIMENTS))
    assert "| ppo_gain_sft_std | 1.100 ± 0.458 |" in page
    assert "| PPO: gain >= 1.0 SFT std, KL <= 6, empathy above SFT, no flag | 1 of 3; on the means: no |" in page
    assert "| Dialogue PPO: cohesion gain interval above 0, words ratio >= 0.8 | 2 of 3 |" in page


def show_json(revs: dict[str, str], states: dict[str, str] | None = None) -> list[dict]:
    """``dvc exp show --json`` of DVC 3: the baseline, its experiments as ranges whose first rev is the result.
    As DVC writes it, the metrics leave out list values (the intervals), and a running experiment's entry holds the
    baseline's metrics."""
    def state(rev, name):
        return {"rev": rev, "name": name, "error": None, "experiments": None,
                "data": {"rev": rev, "params": {"params.yaml": {"data": {}}},
                         "metrics": {"metrics/moodpo.json": {"data": {"hypervolume_gain_over_sft": 0.1}}}}}
    def executor(name):
        run = (states or {}).get(name, "success")
        return {"state": run, "name": "dvc-task", "local": {"returncode": 0 if run == "success" else None}}
    ranges = [{"revs": [state(rev, name)], "name": name, "executor": executor(name)} for name, rev in revs.items()]
    other = {"revs": [state("f" * 40, "tune-lr")], "name": "tune-lr", "executor": None}
    return [{**state("workspace", None), "experiments": None},
            {**state("a" * 40, "main"), "experiments": ranges + [other]}]


REVS = {name: f"{i + 1:040x}" for i, name in enumerate(EXPERIMENTS)}


def test_experiments_from_show_keeps_the_finished_named_ones():
    assert experiments_from_show(show_json(REVS), "seed-") == REVS
    with pytest.raises(PipelineError, match="no experiment named nope"):
        experiments_from_show(show_json(REVS), "nope")
    failed = show_json(REVS)
    failed[1]["experiments"][0]["revs"][0].update(data=None, error={"msg": "stage ppo failed", "type": ""})
    with pytest.raises(PipelineError, match="experiment seed-0: no results \\(stage ppo failed\\)"):
        experiments_from_show(failed, "seed-")
    # a running or queued experiment's entry carries the baseline's metrics: it must not be read as its own
    for run in ("running", "queued"):
        with pytest.raises(PipelineError, match=f"experiment seed-1: {run}; wait until `dvc queue status`"):
            experiments_from_show(show_json(REVS, {"seed-1": run}), "seed-")


def test_metrics_come_from_each_experiments_commit_whole():
    files = {(REVS[name], path): json.dumps(data) for name, m in EXPERIMENTS.items() for path, data in m.items()}
    assert experiment_metrics(REVS, lambda rev, path: files[(rev, path)]) == EXPERIMENTS

    def missing(rev, path):
        raise OSError(f"path '{path}' does not exist in '{rev}'")
    with pytest.raises(PipelineError, match=r"experiment seed-0 \(0000000\): cannot read metrics/summary.json"):
        experiment_metrics(REVS, missing)


def test_a_missing_metric_names_the_experiment_and_file():
    broken = {**EXPERIMENTS, "seed-1": {k: v for k, v in EXPERIMENTS["seed-1"].items() if k != "metrics/moodpo.json"}}
    with pytest.raises(PipelineError, match="experiment seed-1: metrics/moodpo.json has no moodpo.responsiveness"):
        aggregate(broken)


def git(cwd, *args) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_seed_table_script_reads_the_experiments_commits(tmp_path):
    """The script end to end: experiments as commits of a git repository, `dvc exp show --json` saved."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    revs = {}
    for name, metrics in EXPERIMENTS.items():
        for path, data in metrics.items():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(json.dumps(data))
        git(tmp_path, "add", "metrics")
        git(tmp_path, "commit", "-qm", name)
        revs[name] = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "show.json").write_text(json.dumps(show_json(revs)))
    proc = subprocess.run([sys.executable, str(REPO / "scripts/seed_table.py"), "--show-json", "show.json",
                           "--out", "seeds.md"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| MOODPO: every objective's high-low interval above 0, hypervolume above SFT | 1 of 3 |" in (
        tmp_path / "seeds.md").read_text()
    (tmp_path / "bad.json").write_text("[{")
    proc = subprocess.run([sys.executable, str(REPO / "scripts/seed_table.py"), "--show-json", "bad.json"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: bad.json:1: not valid JSON")
