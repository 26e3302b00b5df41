"""Where a stage's models, tensors and random generators live, and the precision its forwards run in.

Every stage asks here instead of choosing for itself, so one machine change (CPU, one GPU, one GPU per
launcher process) moves every model, batch and sampling generator together.
"""

from __future__ import annotations

import contextlib
import os

import torch

from rlhfpipe import distributed
from rlhfpipe.errors import PipelineError


def stage_device(launched: bool = False, single_process: bool = False) -> torch.device:
    """This process's device (joining the launcher's process group first); TF32 matmuls on CUDA.

    ``launched``: the stage runs under ``runtime.launcher``, so several visible GPUs without a launcher are
    refused in one line (TRL would wrap the model in DataParallel or raise deep inside its setup);
    ``single_process``: a stage that always runs as one process (child_sft, moodpo), refused likewise.
    TF32 keeps fp32 storage and rounds only the matmul inputs (10-bit mantissa), which the CPU toy runs never
    see; on Ampere and later it is several times faster than exact fp32.
    """
    if launched or single_process:
        refuse_unlaunched_gpus(launched)
    device = distributed.init()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on (the CPU for a module without weights)."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def refuse_unlaunched_gpus(launched: bool = True) -> None:
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        if not launched:
            raise PipelineError(f"{gpus} GPUs are visible, and this stage trains in one process: pick one GPU "
                                "with CUDA_VISIBLE_DEVICES=0")
        raise PipelineError(
            f"{gpus} GPUs are visible to one process: set runtime.launcher to start one process per GPU "
            "(e.g. 'torchrun --nproc_per_node N' or 'accelerate launch --config_file "
            "configs/accelerate/multi_gpu.yaml'), or pick one GPU with CUDA_VISIBLE_DEVICES=0")


def refuse_deepspeed(stage: str) -> None:
    """For stages that train with their own loop: a DeepSpeed launcher would be silently ignored."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        raise PipelineError(f"{stage}: DeepSpeed launchers are not supported by this stage (it trains with its own "
                            "loop, which DeepSpeed would not shard); use configs/accelerate/multi_gpu.yaml or torchrun")


def place(obj, device: torch.device):
    """A model or tensor on ``device`` (models are moved in place and returned)."""
    return obj.to(device)


def generator(seed: int, device: torch.device) -> torch.Generator:
    """A seeded generator on ``device``: sampling draws its uniforms where the probabilities are."""
    return torch.Generator(device=device).manual_seed(seed)


def has_bf16_units(device: torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic in hardware: a CUDA GPU that supports it natively, or a CPU with
    AVX512-BF16 or AMX. Elsewhere torch emulates bf16, which on a 2-core AVX2 CPU made one LoRA SFT step of
    SmolLM2-135M take 315 s instead of about 30 s."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def stage_precision(precision: str, device: torch.device | None = None) -> str:
    """``runtime.precision`` as this stage runs it: ``auto`` becomes bf16 where ``device`` (default: the GPU if
    one is visible, else the CPU) has bf16 units, else fp32; the choice is printed. Same machine, same choice,
    so the outputs stay reproducible there."""
    if precision != "auto":
        return precision
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    chosen = "bf16" if has_bf16_units(device) else "fp32"
    units = "has" if chosen == "bf16" else "has no"
    print(f"runtime.precision auto -> {chosen} (this {device.type.upper()} {units} bf16 units)", flush=True)
    return chosen


def autocast(precision: str, device: torch.device):
    """bf16 autocast for forwards under ``precision: bf16``; the weights, hence the optimizer's master copy,
    stay fp32, and log-probs are taken in fp32 from the (bf16) logits. A no-op under fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def trl_precision(precision: str) -> dict:
    """TRL's mixed-precision flags, both set: TRL's configs default to bf16 on, which would silently differ
    from our fp32 runs."""
    return {"bf16": precision == "bf16", "fp16": False}
