"""Timing that survives a noisy machine, the measured matmul peak, markdown tables: used by
the benchmarks (bench/) and `resnetlab reproduce`."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_rates(runners: dict[str, tuple[Callable[[], None], int]], device: torch.device, *,
                      rounds: int = 5, seconds: float = 1.0) -> dict[str, float]:
    """Items per second of each runner (a call and the items it processes), as the median over
    `rounds` rounds that take turns, so that a noisy neighbour slows every runner alike."""
    calls = {}
    for name, (call, _) in runners.items():  # warm up (and compile), then size each round to ~`seconds`
        call(), call()
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        calls[name] = max(1, round(seconds / max(time.perf_counter() - start, 1e-6)))
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, (call, items) in runners.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                call()
            sync(device)
            samples[name].append(items * calls[name] / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in samples.items()}


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 4096) -> float:
    """FLOP/s of a large square matmul: the practical peak that conv-heavy rows are measured against."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return interleaved_rates({"mm": (lambda: a @ b, 2 * n**3)}, device, rounds=3, seconds=1.0)["mm"]


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
