"""Shared by the benchmarks: the machine's name and versions; timing lives in resnetlab.measure."""

from __future__ import annotations

import platform

import torch

from resnetlab.measure import interleaved_rates, markdown, matmul_peak  # noqa: F401 (the benchmarks' toolkit)


def machine(device: torch.device) -> str:
    """One line naming the processor (or GPU) and the versions, for the tables' headers."""
    import timm
    import torchvision

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as cpuinfo:
                name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        name += f", {torch.get_num_threads()} threads"
    return (f"{name}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, timm {timm.__version__}")
