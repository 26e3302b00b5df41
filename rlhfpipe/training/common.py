"""Plumbing the trainers share: dvclive curves, resumable checkpoint folders, HF Trainer arguments."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

from rlhfpipe import distributed
from rlhfpipe.devices import trl_precision
from rlhfpipe.errors import PipelineError
from rlhfpipe.training import trackers

CHECKPOINT_ROOT = Path("checkpoints")


class NullLive:
    """The logger where no curves are written: processes other than the main one, the child SFT, benchmarks."""

    def log_metric(self, *args, **kwargs) -> None:
        pass

    def next_step(self) -> None:
        pass

    def end(self) -> None:
        pass


def open_live(directory: Path | None):
    """dvclive writing into ``directory`` without touching dvc.yaml, the DVC experiment or a report;
    a NullLive when ``directory`` is None (a process other than the main one, see distributed.main_output)."""
    if directory is None:
        return NullLive()
    from dvclive import Live

    live = Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False, report=None, monitor_system=False)
    return trackers.FanOut(live, directory.name) if trackers.hf_report_to() != "none" else live


class LiveCallback(TrainerCallback):
    """Forward the HF Trainer's logs to dvclive, one step per logging event (no timestamps)."""

    def __init__(self, live, keys: tuple[str, ...]):
        self.live, self.keys = live, keys

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run starts from the log history stored in its checkpoint; writing it again makes the
        # curves (DVC outs) byte-identical to those of an uninterrupted run.
        if state.is_world_process_zero:
            for logs in state.log_history:
                self._write(logs, logs["step"])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self._write(logs, state.global_step)

    def _write(self, logs: dict, step: int) -> None:
        logged = False
        for key in self.keys:
            if key in logs and isinstance(logs[key], (int, float)) and math.isfinite(logs[key]):
                self.live.log_metric(f"train/{key}" if not key.startswith("eval_") else f"eval/{key[5:]}", float(logs[key]))
                logged = True
        if logged:
            self.live.log_metric("step", step, plot=False)
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
        with p.open("rb") as f:  # in blocks: model files can be larger than the memory left
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def code_version() -> str:
    """Digest of the pipeline's source and of the libraries that train: a checkpoint written by other
    code would resume into a result that a clean run of this code does not give."""
    import accelerate
    import peft
    import transformers
    import trl

    repo = Path(__file__).resolve().parents[2]
    h = hashlib.md5()
    for path in sorted([*(repo / "rlhfpipe").rglob("*.py"), *(repo / "stages").glob("*.py")]):
        h.update(str(path.relative_to(repo)).encode())
        h.update(path.read_bytes())
    for module in (torch, transformers, trl, accelerate, peft):
        h.update(f"{module.__name__}=={module.__version__}".encode())
    return h.hexdigest()


TRAINER_CHECKPOINT = re.compile(r"checkpoint-\d+")


def _complete(path: Path) -> bool:
    """The HF Trainer writes trainer_state.json last: a checkpoint without a readable one was cut short."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def checkpoint_dir(stage: str, key: str) -> tuple[Path, Path | None]:
    """The stage's checkpoint folder and the HF Trainer checkpoint in it to resume from, if any.

    A folder written for other inputs, params or code is wiped: resuming it would mix two runs. Trainer
    checkpoints other than the newest complete one (one being written when the stage was killed, one
    being rotated out) are removed.
    """
    directory = CHECKPOINT_ROOT / stage
    stamp = directory / "fingerprint.txt"
    key = fingerprint(key, code_version())
    if distributed.is_main():
        if directory.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key + "\n")
        found = [p for p in directory.iterdir() if p.is_dir() and TRAINER_CHECKPOINT.fullmatch(p.name)]
        complete = sorted((p for p in found if _complete(p)), key=lambda p: int(p.name.split("-")[1]))
        for path in found:
            if path not in complete[-1:]:
                shutil.rmtree(path)
    distributed.barrier()  # the other processes look only once the folder is wiped, stamped and cleaned
    resume = [p for p in directory.iterdir() if p.is_dir() and TRAINER_CHECKPOINT.fullmatch(p.name)]
    return directory, resume[0] if resume else None


def clear_checkpoints(stage: str) -> None:
    if distributed.is_main():
        shutil.rmtree(CHECKPOINT_ROOT / stage, ignore_errors=True)


def refuse_zero3(trainer) -> None:
    """Stop before training under DeepSpeed ZeRO-3: the stages save the final model with save_pretrained,
    which would write this process's weight shards only."""
    plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    if plugin is not None and plugin.zero_stage == 3:
        raise PipelineError("DeepSpeed ZeRO-3 is not supported by the sft and reward stages yet (the final save "
                            "would miss the sharded weights); use configs/accelerate/zero2.yaml")


def trainer_arguments(output_dir: Path, *, epochs: float, batch_size: int, learning_rate: float, warmup_ratio: float,
                      weight_decay: float, seed: int, n_examples: int, save_every: float, precision: str,
                      batch_key: str) -> dict:
    """Keyword arguments shared by TRL's SFTConfig and RewardConfig.

    ``batch_size`` is global: each of the launcher's processes takes ``batch_size / world_size`` per step
    (``batch_key`` names the param in the error when it does not divide).
    """
    per_process = distributed.per_process(batch_size, batch_key)
    steps_per_epoch = math.ceil(n_examples / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=per_process,
        per_device_eval_batch_size=per_process,
        # without it, accelerate treats a torchrun launch on a machine without GPUs as one process
        use_cpu=not torch.cuda.is_available(),
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=int(total_steps * warmup_ratio),
        weight_decay=weight_decay,
        seed=seed,
        data_seed=seed,
        **trl_precision(precision),
        report_to=trackers.hf_report_to(),
        save_strategy="steps",
        save_steps=max(1, int(total_steps * save_every)),
        save_total_limit=1,
        logging_steps=max(1, total_steps // 50),
        eval_strategy="epoch",
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
