"""What the machine supports: the device, bf16, channels_last, torch.compile.

Every choice is made from what the device reports (or measured speed), never from the machine
resnetlab happened to be developed on.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" (cuda where available, else cpu), "cpu" or "cuda[:N]"; a clear error for others."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available here")
    return device


def bf16_is_native(device: torch.device) -> bool:
    """Whether the device computes in bfloat16 natively (faster than fp32): CUDA compute
    capability >= 8.0, or a CPU with AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if bf16_is_native(device) else "fp32"
    return precision


def to_precision(images: torch.Tensor, precision: str) -> torch.Tensor:
    """Images as the network's weights expect them: float64 for fp64 (weights too), else as they are."""
    return images.double() if precision == "fp64" else images


def autocast(device: torch.device, precision: str):
    """bf16 autocast (weights and their gradients stay fp32), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_channels_last(cfg) -> bool:
    """The run's memory format: cfg.channels_last, or by default channels_last, measured faster
    for training on the CPU (fp32 and bf16, docs/benchmarks.md) and the layout of cuDNN's
    tensor-core kernels on GPUs."""
    return True if cfg.channels_last is None else cfg.channels_last


# Steps from which compiling pays: compiling the training graph costs ~10-40 s on a 2-core CPU,
# and the compiled step is ~15% faster (bench/training.py), so below ~2000 steps it is a loss.
COMPILE_MIN_STEPS = 2000


def pick_compile(cfg, device: torch.device, total_steps: int) -> bool:
    """Whether to torch.compile the training forward: cfg.compile, or by default for runs long
    enough to pay for the compilation, where inductor can build."""
    if cfg.compile is not None:
        return cfg.compile
    return total_steps >= COMPILE_MIN_STEPS and compiler_available(device)


def room_for_many_networks() -> contextlib.AbstractContextManager:
    """Settings for the calls that may compile a network, in a process that compiles many.

    Every ResNet's forward is one code object to dynamo, so each architecture compiled in a
    process adds an entry to that one cache; past `recompile_limit` (8) the next networks would
    silently run eager (`resnetlab reproduce` trains a dozen architectures in one process)."""
    import torch._dynamo.config

    return torch._dynamo.config.patch(recompile_limit=max(torch._dynamo.config.recompile_limit, 256))


def compiler_available(device: torch.device) -> bool:
    """Whether torch.compile's inductor can generate code here: Triton on CUDA, a C++ compiler
    on the CPU."""
    if not torch._dynamo.is_dynamo_supported():
        return False
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return shutil.which(os.environ.get("CXX", "g++")) is not None
