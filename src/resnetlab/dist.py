"""torchrun/DDP helpers. Without torchrun every function is the single-process no-op, so the
engine has one code path for 1 and N processes."""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as torch_dist
from torch import nn


def world_size() -> int:
    return torch_dist.get_world_size() if torch_dist.is_initialized() else 1


def rank() -> int:
    return torch_dist.get_rank() if torch_dist.is_initialized() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(device: str = "cpu") -> None:
    """Join the process group torchrun set up: NCCL on CUDA, gloo on the CPU."""
    if not launched_by_torchrun() or torch_dist.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch_dist.init_process_group(backend=backend)


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_initialized():
        tensor = tensor.clone()
        torch_dist.all_reduce(tensor)
    return tensor


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    if world_size() == 1:
        return model
    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def no_sync(model: nn.Module, enabled: bool):
    """Skip DDP's gradient all-reduce (for all but the last micro-batch of accumulation)."""
    model = getattr(model, "_orig_mod", model)  # under torch.compile
    if enabled and isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def shutdown() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()
