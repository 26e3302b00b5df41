"""Plumbing the trainers share: dvclive curves, resumable checkpoint folders, HF Trainer arguments."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

from transformers import TrainerCallback

CHECKPOINT_ROOT = Path("checkpoints")


def open_live(directory: Path):
    """dvclive writing into ``directory`` without touching dvc.yaml, the DVC experiment or a report."""
    from dvclive import Live

    return Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)


class LiveCallback(TrainerCallback):
    """Forward the HF Trainer's logs to dvclive, one step per logging event (no timestamps)."""

    def __init__(self, live, keys: tuple[str, ...]):
        self.live, self.keys = live, keys

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        logged = False
        for key in self.keys:
            if key in logs and isinstance(logs[key], (int, float)) and math.isfinite(logs[key]):
                self.live.log_metric(f"train/{key}" if not key.startswith("eval_") else f"eval/{key[5:]}", float(logs[key]))
                logged = True
        if logged:
            self.live.log_metric("step", state.global_step, plot=False)
            self.live.next_step()


def fingerprint(*parts) -> str:
    """Hash of everything a checkpoint depends on; a checkpoint from other inputs is never resumed."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """md5 of a file, or of all files below a directory (names included)."""
    h = hashlib.md5()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def checkpoint_dir(stage: str, key: str) -> tuple[Path, bool]:
    """The stage's checkpoint folder and whether it holds a resumable run for ``key``.

    A folder written for other inputs or params is wiped: resuming it would mix two runs.
    """
    directory = CHECKPOINT_ROOT / stage
    stamp = directory / "fingerprint.txt"
    if directory.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")
    resumable = any(p.name.startswith("checkpoint-") for p in directory.iterdir())
    return directory, resumable


def clear_checkpoints(stage: str) -> None:
    shutil.rmtree(CHECKPOINT_ROOT / stage, ignore_errors=True)


def trainer_arguments(output_dir: Path, *, epochs: float, batch_size: int, learning_rate: float, warmup_ratio: float,
                      weight_decay: float, seed: int, n_examples: int, save_every: float, bf16: bool) -> dict:
    """Keyword arguments shared by TRL's SFTConfig and RewardConfig."""
    steps_per_epoch = math.ceil(n_examples / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=int(total_steps * warmup_ratio),
        weight_decay=weight_decay,
        seed=seed,
        data_seed=seed,
        bf16=bf16,
        report_to="none",
        save_strategy="steps",
        save_steps=max(1, int(total_steps * save_every)),
        save_total_limit=1,
        logging_steps=max(1, total_steps // 50),
        eval_strategy="epoch",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
