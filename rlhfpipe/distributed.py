"""Process-group helpers for stages started by ``torchrun`` or ``accelerate launch`` with several processes.

With one process (plain ``python``) every helper is a no-op or an identity, so a single-process run
computes exactly what it did before multi-process support existed.
"""

from __future__ import annotations

import atexit
import contextlib
import os

import torch
import torch.distributed as dist

from rlhfpipe.config import ParamError
from rlhfpipe.io import atomic_path


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init() -> torch.device:
    """Join the process group the launcher describes (WORLD_SIZE > 1) and return this process's device.

    gloo on CPU, nccl on CUDA with one GPU per local rank. Idempotent, so stages and trainers may both call it.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(finish)
    return device()


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def finish() -> None:
    """Leave the process group (registered at exit by init), so NCCL frees its communicators cleanly."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def per_process(global_batch: int, key: str) -> int:
    """Split a batch given for the whole run (params are global, so one param set means one run at any scale)."""
    n = world_size()
    if global_batch % n:
        raise ParamError(key, global_batch, f"must be divisible by the number of processes ({n})")
    return global_batch // n


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over processes: a new tensor on ``x``'s device (the input is left as it is)."""
    if world_size() == 1:
        return x
    out = x.detach().to(device(), copy=True)  # nccl reduces CUDA tensors only
    dist.all_reduce(out)
    return out.to(x.device)


def mean(x: torch.Tensor) -> float:
    """Mean of every element of ``x`` on every process (each process may hold a different count)."""
    if world_size() == 1:
        return float(x.mean())
    count = torch.tensor(x.numel(), dtype=torch.float64, device=x.device)
    total = all_reduce_sum(torch.stack([x.detach().double().sum(), count]))
    return float(total[0] / total[1])


def average(value: float) -> float:
    """Mean of a float over processes."""
    if world_size() == 1:
        return value
    return float(all_reduce_sum(torch.tensor(value, dtype=torch.float64))) / world_size()


def share(count: torch.Tensor) -> float:
    """This process's ``count`` over the mean count per process (1.0 with one process). A per-process mean
    weighted by it and then averaged over processes is the mean over every process's items."""
    if world_size() == 1:
        return 1.0
    return float(count * world_size() / all_reduce_sum(count))


def average_gradients(parameters: list[torch.nn.Parameter], bucket_elements: int = 2 ** 24) -> None:
    """Replace every gradient by its mean over processes, as DDP would, one flat bucket per all_reduce call.

    A parameter no process computed a gradient for keeps none, so the optimizer skips it as it would in one
    process; one that only some processes reached counts as a zero gradient on the others.
    """
    if world_size() == 1:
        return
    reached = all_reduce_sum(torch.tensor([float(p.grad is not None) for p in parameters], device=device()))
    parameters = [p for p, n in zip(parameters, reached.tolist()) if n > 0]
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.Tensor] = []
    for i, p in enumerate(parameters):
        bucket.append(p.grad)
        if sum(g.numel() for g in bucket) >= bucket_elements or i == len(parameters) - 1:
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            flat /= world_size()
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
            bucket = []


def all_gather(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` from every process, in rank order (same shape everywhere)."""
    if world_size() == 1:
        return [x]
    x = x.to(device()).contiguous()
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x)
    return out


def main_output(target):
    """``atomic_path(target)`` on the main process; elsewhere a context yielding None, so outputs are written once."""
    return atomic_path(target) if is_main() else contextlib.nullcontext()
