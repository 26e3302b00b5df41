"""Trackers beside dvclive: TensorBoard event files appear in the ignored tracker folder, never in an out."""

import hashlib
from pathlib import Path

import pytest

from conftest import REPO, stage, tiny_params, write_params


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run_sft(root: Path, report_to: list[str]) -> None:
    params = tiny_params()
    params["runtime"]["report_to"] = report_to
    write_params(root, params)
    for name, args in (("corpus", ["data/corpus/corpus.jsonl"]), ("prepare", ["data/prepared", "metrics/data.json"]),
                       ("base_model", ["data/prepared", "models/base"]),
                       ("sft", ["data/prepared", "models/base", "models/sft", "metrics/sft.json", "metrics/train/sft"])):
        proc = stage(name, *args, cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_tensorboard_writes_event_files_outside_the_outs(tmp_path):
    pytest.importorskip("tensorboard")
    plain, tracked = tmp_path / "plain", tmp_path / "tracked"
    plain.mkdir(), tracked.mkdir()
    run_sft(plain, ["dvclive"])
    run_sft(tracked, ["dvclive", "tensorboard"])
    events = list((tracked / "trackers/sft/tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert not (plain / "trackers").exists()
    # the outs (model, metrics, dvclive curves) are the same bytes with or without the tracker
    for out in ("models/sft", "metrics/train/sft"):
        assert digests(plain / out) == digests(tracked / out)
    assert (plain / "metrics/sft.json").read_bytes() == (tracked / "metrics/sft.json").read_bytes()


def test_ppo_fans_each_metric_out_to_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from dvclive import Live

    from rlhfpipe.training import trackers

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    trackers.activate(["dvclive", "tensorboard"], "trackers", "ppo")
    try:
        live = trackers.FanOut(Live(dir="curves", dvcyaml=False, save_dvc_exp=False, report=None,
                                    monitor_system=False), "ppo")
        for step in range(3):
            live.log_metric("objective/score", float(step))
            live.next_step()
        live.end()
    finally:
        trackers.activate(["dvclive"], "trackers", "ppo")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "trackers/ppo/tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("objective/score")] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert (tmp_path / "curves/plots/metrics/objective/score.tsv").read_text().splitlines()[1:] == ["0\t0.0", "1\t1.0", "2\t2.0"]


def test_a_tracker_that_is_not_installed_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    from rlhfpipe.errors import PipelineError
    from rlhfpipe.training import trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(PipelineError, match=r"^params.yaml: runtime.report_to lists wandb, which is not installed"):
        trackers.activate(["dvclive", "wandb"], str(tmp_path), "ppo")


def test_tracker_folder_is_ignored_by_git_and_dvc():
    assert "/trackers/" in (REPO / ".gitignore").read_text().split()
    assert "/trackers/" in (REPO / ".dvcignore").read_text().split()
