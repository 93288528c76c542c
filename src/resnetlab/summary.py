"""A summary shaped like the paper's Table 1: per stage the output size, blocks, parameters and
multiply-adds, counted by running the network (torch.utils.flop_counter and module hooks)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class SummaryRow:
    stage: str
    output_size: tuple[int, ...]  # (C, H, W) of feature maps, (features,) for the head
    blocks: int
    params: int
    macs: int


@dataclass(frozen=True)
class Summary:
    name: str
    input_size: tuple[int, int, int]
    description: str
    rows: list[SummaryRow] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(row.params for row in self.rows)

    @property
    def macs(self) -> int:
        return sum(row.macs for row in self.rows)

    def __str__(self) -> str:
        header = ("stage", "output", "blocks", "params", "mult-adds")
        lines = [(r.stage, _size(r.output_size), str(r.blocks) if r.blocks else "",
                  f"{r.params:,}", _giga(r.macs)) for r in self.rows]
        lines.append(("total", "", str(sum(r.blocks for r in self.rows)), f"{self.params:,}", _giga(self.macs)))
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        rule = "  ".join("-" * w for w in widths)

        def render(row):
            return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

        c, h, w = self.input_size
        title = f"{self.name}: {self.description}, input {c}x{h}x{w}"
        return "\n".join([title, render(header), rule, *map(render, lines[:-1]), rule, render(lines[-1])])


def _size(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}, {shape[0]}"
    return f"{shape[0]}-d"


def _giga(macs: int) -> str:
    if macs >= 1e8:
        return f"{macs / 1e9:.3f} G"
    return f"{macs / 1e6:.2f} M" if macs >= 1e5 else f"{macs / 1e3:.2f} K"


def describe(cfg) -> str:
    if cfg.block == "bottleneck":
        layout = "v1, stride in the 1x1" if cfg.stride_in_1x1 else "v1.5, stride in the 3x3"
        block = f"bottleneck blocks ({layout})"
    else:
        block = "basic blocks"
    shortcut = "plain (no shortcuts)" if cfg.shortcut == "none" else f"shortcut option {cfg.shortcut}"
    return f"{block}, {shortcut}"


def _param_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def summary(model: nn.Module, input_size=(3, 224, 224)) -> Summary:
    """Count a resnetlab model's parameters and multiply-adds per row of Table 1 for one image
    of `input_size` (C, H, W). A multiply-add is half a FLOP of flop_counter (convs and fc)."""
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {input_size}")
    # Each row: its name, the module whose output is the row's output, the modules it owns.
    # The max pool is parameter- and multiply-free, so conv2_x's counts are its blocks'.
    spec = [("conv1", model.bn1, [model.conv1, model.bn1])]
    spec += [(name, stage, [stage]) for name, stage in zip(model.stage_names, model.stages())]
    spec.append(("pool, fc", model.fc, [model.fc]))
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [marker.register_forward_hook(_recorder(shapes, name)) for name, marker, _ in spec]
    reference = model.conv1.weight
    x = torch.zeros((1, *input_size), device=reference.device, dtype=reference.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    # flop_counter keys each module by its path from the root, named after the root's class.
    flops = counter.get_flop_counts()
    root = type(model).__name__
    module_path = {module: f"{root}.{name}" for name, module in model.named_modules() if name}
    rows = []
    for name, _, modules in spec:
        macs = sum(sum(flops.get(module_path[m], {}).values()) for m in modules) // 2
        blocks = len(modules[0]) if isinstance(modules[0], nn.Sequential) else 0
        rows.append(SummaryRow(name, shapes[name], blocks, _param_count(*modules), macs))
    counted = sum(flops.get("Global", {}).values()) // 2
    if counted != sum(r.macs for r in rows):
        raise RuntimeError(f"multiply-adds outside the rows of Table 1: {counted} vs {sum(r.macs for r in rows)}")
    return Summary(getattr(model, "model_name", root), input_size, describe(model.cfg), rows)


def _recorder(shapes: dict, name: str):
    def hook(module, inputs, output):
        shapes[name] = tuple(output.shape[1:])

    return hook
