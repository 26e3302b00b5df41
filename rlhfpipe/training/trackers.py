"""Trackers beside dvclive, chosen by ``runtime.report_to``: TensorBoard and Weights & Biases.

dvclive is always on: its curves are DVC outs and must be byte-identical run to run. The optional
trackers carry timestamps and run ids, so they write under ``runtime.tracker_dir`` (git- and
dvc-ignored), one folder per stage, never into an out. TRL's trainers reach them through their own
``report_to`` (``hf_report_to``); our PPO loop through ``FanOut``, which copies every dvclive metric.
W&B runs offline unless the user has set ``WANDB_MODE``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from rlhfpipe.errors import PipelineError

MODULES = {"tensorboard": "tensorboard", "wandb": "wandb"}
_active: list[str] = []


def activate(report_to: list[str], tracker_dir: str, stage: str) -> list[str]:
    """Point the optional trackers of ``report_to`` at ``tracker_dir/stage``; the ones that are on."""
    optional = [name for name in report_to if name != "dvclive"]
    for name in optional:
        if importlib.util.find_spec(MODULES[name]) is None:
            raise PipelineError(f"params.yaml: runtime.report_to lists {name}, which is not installed "
                                f"(pip install {name}, or drop it from the list)")
    root = Path(tracker_dir) / stage
    if "tensorboard" in optional:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(root / "tensorboard")
    if "wandb" in optional:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_PROJECT", "rlhfpipe")
        os.environ["WANDB_DIR"] = str(root)
        root.mkdir(parents=True, exist_ok=True)
    _active[:] = optional
    return optional


def hf_report_to() -> list[str] | str:
    """``report_to`` for TRL/transformers training arguments: the active optional trackers, or "none"."""
    return list(_active) or "none"


class FanOut:
    """A dvclive ``Live`` that also sends each metric to the active optional trackers (our PPO loop)."""

    def __init__(self, live, stage: str):
        self.live, self.step, self.tb, self.run = live, 0, None, None
        if "tensorboard" in _active:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=os.environ["TENSORBOARD_LOGGING_DIR"])
        if "wandb" in _active:
            import wandb

            self.run = wandb.init(name=stage, dir=os.environ["WANDB_DIR"])

    def log_metric(self, key: str, value, **kwargs) -> None:
        self.live.log_metric(key, value, **kwargs)
        if self.tb is not None:
            self.tb.add_scalar(key, value, self.step)
        if self.run is not None:
            self.run.log({key: value}, step=self.step)

    def next_step(self) -> None:
        self.live.next_step()
        self.step += 1

    def end(self) -> None:
        self.live.end()
        if self.tb is not None:
            self.tb.close()
        if self.run is not None:
            self.run.finish()
