"""Shared by the benchmarks: the machine's name and versions; timing lives in resnetlab.measure."""

from __future__ import annotations

import argparse
import collections
import platform

import torch

from resnetlab.device import bf16_is_native
from resnetlab.host import keep_freed_memory
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


def common_arguments(doc: str, seconds: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median is reported)")
    parser.add_argument("--seconds", type=float, default=seconds, help="length of one runner's turn")
    parser.add_argument("--data-dir", default=None, help="where Fashion-MNIST is (default: found or downloaded)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (default: keep freed memory, as resnetlab's CLI does)")
    return parser


def header(title: str, device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    """Set up malloc for every row alike, print the table's title with the machine and the
    measured matmul peaks; return the peaks."""
    kept = not args.default_malloc and keep_freed_memory()
    print(f"# {title} ({machine(device)}; malloc: {'freed memory kept' if kept else 'default'})\n")
    # Where bf16 is emulated (~1 GFLOP/s) a 4096 matmul takes minutes: a 512 one says as much.
    native = bf16_is_native(device)
    peak = {"fp32": matmul_peak(torch.float32, device),
            "bf16": matmul_peak(torch.bfloat16, device, 4096 if native else 512)}
    print(f"matmul peak (4096x4096): fp32 {peak['fp32'] / 1e9:,.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:,.0f} GFLOP/s"
          f"{'' if native else ' (emulated: no bf16 instructions; 512x512)'}\n")
    return peak


def conv_layers(model: torch.nn.Module, image_shape) -> collections.Counter:
    """(in, out, kernel, stride, input side, output side) of every conv that a forward pass over
    `image_shape` images runs, counted."""
    layers = collections.Counter()
    hooks = [conv.register_forward_hook(lambda m, args, out: layers.update(
        [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], args[0].shape[-1], out.shape[-1])]))
        for conv in model.modules() if isinstance(conv, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, *image_shape))
    for hook in hooks:
        hook.remove()
    return layers
