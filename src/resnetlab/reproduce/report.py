"""What every report shares: table cells, the machine's description, the docs section."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path

import torch


def param_count(model: str, **overrides) -> int:
    from ..zoo import create_model

    return sum(p.numel() for p in create_model(model, **overrides).parameters())


def final_errors(rows: list[dict]) -> tuple[float, float]:
    return rows[-1]["train_err"], rows[-1]["test_err"]


def mean_spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def reference_cell(table: dict[str, float], model: str) -> str:
    return f"{table[model]:.2f}" if model in table else "-"


def describe_device(name: str) -> str:
    from ..device import resolve_device

    device = resolve_device(name)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    return f"cpu ({os.cpu_count()} cores, {platform.machine()})"


def update_docs(docs: Path, experiment: str, section: str, out: Path) -> None:
    """Put `section` between this experiment's markers in `docs` (appended the first time), its
    figures copied next to it under figures/."""
    import shutil

    for figure in out.glob("*.png"):
        target = docs.parent / "figures" / f"reproduce-{figure.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, target)
        section = section.replace(f"]({figure.name})", f"](figures/{target.name})")
    begin, end = f"<!-- reproduce:{experiment} -->", f"<!-- /reproduce:{experiment} -->"
    text = docs.read_text() if docs.is_file() else ""
    block = f"{begin}\n{section.strip()}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    docs.write_text(text)
