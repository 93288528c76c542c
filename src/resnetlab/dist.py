"""torchrun/DDP helpers. Without torchrun every function is the single-process no-op, so the
engine has one code path for 1 and N processes."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import timedelta

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


# A collective that waits longer than this for a rank has lost that rank: fail instead of
# hanging. Long enough for rank 0 to write a checkpoint while the others wait at a barrier.
TIMEOUT = timedelta(seconds=float(os.environ.get("RESNETLAB_DIST_TIMEOUT", 300)))


def init(device: str = "cpu") -> None:
    """Join the process group torchrun set up: NCCL on CUDA, gloo on the CPU."""
    if not launched_by_torchrun() or torch_dist.is_initialized():
        return
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch_dist.init_process_group(backend=backend, timeout=TIMEOUT)


def broadcast_from_main(value):
    """Rank 0's value of a small picklable object (our own, never read from a file), on every rank."""
    if not torch_dist.is_initialized():
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def explain_failure(error: RuntimeError) -> RuntimeError:
    """A collective that failed because another process died says so, and what to do next."""
    lost = isinstance(error, torch_dist.DistError) or any(word in str(error) for word in ("gloo", "NCCL", "Connection"))
    if world_size() > 1 and lost and not isinstance(error, Stopped):
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        return RuntimeError(f"lost another process of the run (rank {rank()} of {world_size()}: {first}); "
                            "see that process's error above, then continue the run with --resume")
    return error


class Stopped(RuntimeError):
    """The process was asked to stop (SIGTERM): torchrun does this to every rank when one fails."""


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM into a Stopped error with a message that says what to do next."""
    def handler(signum, frame):
        raise Stopped(f"stopped by SIGTERM (rank {rank()} of {world_size()}; under torchrun this means another "
                      "process of the run failed: see its error above); continue the run with --resume")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave the default
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def barrier() -> None:
    if torch_dist.is_initialized():
        torch_dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_initialized():
        tensor = tensor.clone()
        torch_dist.all_reduce(tensor)
    return tensor


# --- BatchNorm over the global batch ----------------------------------------------------------------


class _GlobalBatchNorm(torch.autograd.Function):
    """Training-mode BN whose statistics are those of the global batch (all ranks), with the
    matching backward. Two-pass (mean, then centred squares) like the single-process kernel, so
    that N processes reproduce one process to rounding."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = (0, 2, 3)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype)
        total = all_reduce_sum(torch.cat([x.sum(dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce_sum(centred.square().sum(dims)) / n
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(1, -1, 1, 1)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.n = n
        unbiased = var * n / (n - 1).clamp_min(1)
        ctx.mark_non_differentiable(mean, unbiased)
        return xhat * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1), mean, unbiased

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        xhat, invstd, weight = ctx.saved_tensors
        dims = (0, 2, 3)
        sum_dy, sum_dy_xhat = grad_y.sum(dims), (grad_y * xhat).sum(dims)
        mean_dy, mean_dy_xhat = (all_reduce_sum(torch.cat([sum_dy, sum_dy_xhat])) / ctx.n).chunk(2)
        grad_x = (grad_y - mean_dy.view(1, -1, 1, 1) - xhat * mean_dy_xhat.view(1, -1, 1, 1)) \
            * (invstd * weight).view(1, -1, 1, 1)
        # this rank's share of the parameter gradients (grad of weight, of bias): DDP averages them
        return grad_x, sum_dy_xhat, sum_dy, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with global-batch statistics on any backend, gloo on the CPU included
    (torch's SyncBatchNorm needs a GPU). The same parameters and buffers as BatchNorm2d, so
    checkpoints are interchangeable; in eval mode, or alone, it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        y, mean, var = _GlobalBatchNorm.apply(x if x.dtype == torch.float64 else x.float(), self.weight, self.bias,
                                              self.eps)
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var, momentum)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d computes the statistics of the global batch: torch's SyncBatchNorm on
    CUDA, GlobalBatchNorm2d elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is nn.BatchNorm2d:
                replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum)
                replacement.load_state_dict(child.state_dict())
                setattr(module, name, replacement)
    return model


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
