"""Figure 7: the layer responses of plain nets and ResNets (section 4.2, "Analysis of Layer Responses").

A layer's response is the output of a 3x3 conv after its BN (scale and shift included) and before
the nonlinearity: the ReLU, or in a ResNet the addition. Each layer's response is summarised by
one pooled standard deviation over every element (N, C, H, W) of the test set. The paper finds
that ResNets respond less than their plain twins, and that a deeper ResNet responds less than a
shallower one: each layer of a ResNet modifies the signal less.

Every degradation run writes its responses (RESPONSES) into its run folder when it finishes, from
the weights it evaluates; this experiment reads them from the degradation OUT, measures any that a
finished run with its checkpoint still lacks, and draws the figure. It trains nothing.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import LAST, atomic_write_text
from ..measure import markdown
from .runs import DEFAULT_RECIPE, Run, Settings, is_finished, placed, run_config, run_dataset

RESPONSES = "responses.json"
# The networks of Figure 7 (plain nets stop at 56, as in Figure 6).
FIGURE7 = ("plain20", "plain56", "resnet20", "resnet56", "resnet110")
# Approximate values read off the paper's Figure 7 (CIFAR-10): std of each layer's response.
PAPER_VALUES = {"plain20": "1-2.5", "plain56": "1-2.5", "resnet20": "-", "resnet56": "0.8-1.5",
                "resnet110": "mostly 0.7-1.2"}
PAPER_LAYER1 = 3.3


# --- The measurement ---------------------------------------------------------------------------


def response_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """The BN after each 3x3 conv, in the order the signal passes them: the stem's (a 3x3 conv in
    the CIFAR family, a 7x7 in the ImageNet one), then in each block the BN of every 3x3 conv.
    A CIFAR net of 6n+2 layers has 6n+1 of them."""
    layers = [("conv1", model.bn1)] if model.conv1.kernel_size == (3, 3) else []
    for stage in model.stage_names:
        for index, block in enumerate(getattr(model, stage)):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                if hasattr(block, conv) and getattr(block, conv).kernel_size == (3, 3):
                    layers.append((f"{stage}.{index}.{bn}", getattr(block, bn)))
    return layers


def measure_responses(model: nn.Module, batches) -> list[dict]:
    """Per layer of `response_layers`: the pooled std of its responses over every batch (in eval
    mode), and the std its BN predicts, sqrt(mean(gamma^2) + var(beta)): what the output of a BN
    whose input is normalised to zero mean and unit variance per channel would have.

    The sums are taken in float64 inside a forward hook, at once: the ReLU that follows works in
    place, so the tensor would not hold the response a moment later."""
    layers = response_layers(model)
    sums = torch.zeros(len(layers), 3, dtype=torch.float64)  # count, sum, sum of squares

    def hook(index):
        def accumulate(module, inputs, output):
            values = output.detach().double()
            sums[index] += torch.stack([torch.tensor(values.numel(), dtype=torch.float64),
                                        values.sum().cpu(), values.square().sum().cpu()])
        return accumulate

    handles = [bn.register_forward_hook(hook(i)) for i, (_, bn) in enumerate(layers)]
    model.eval()
    try:
        with torch.no_grad():
            for images in batches:
                model(images)
    finally:
        for handle in handles:
            handle.remove()
    count, total, square = sums.unbind(1)
    mean = total / count
    std = (square / count - mean.square()).clamp_min(0).sqrt()
    return [{"layer": name, "std": std[i].item(), "predicted": predicted_std(bn), "elements": int(count[i])}
            for i, (name, bn) in enumerate(layers)]


def predicted_std(bn: nn.BatchNorm2d) -> float:
    """The pooled std of gamma * x + beta over channels when each channel's x has mean 0 and
    variance 1: sqrt(mean(gamma^2) + var(beta)), the variance of beta over channels."""
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    return (gamma.square().mean() + beta.var(unbiased=False)).sqrt().item()


def write_responses(folder: Path, cfg, quick: bool) -> dict:
    """Measure a finished run's responses from its last checkpoint (the weights it evaluates: the
    moving average where it keeps one) on its test split, and write RESPONSES into its folder."""
    from ..checkpoint import load_model
    from ..data.augment import Normalize
    from ..device import resolve_device

    device = resolve_device(cfg.device)
    model, meta = load_model(folder / LAST, device)
    normalize = Normalize.from_state_dict(meta["normalize"])
    test = run_dataset(cfg, quick).test
    batches = (normalize(test.images[i:i + 500].to(device)) for i in range(0, len(test), 500))
    layers = measure_responses(model, batches)
    result = {"model": cfg.model, "seed": cfg.seed, "step": meta["step"], "images": len(test),
              "measured": "pooled std over every element of each 3x3 layer's BN output, eval mode, float64 sums",
              "layers": layers}
    atomic_write_text(folder / RESPONSES, json.dumps(result, indent=1) + "\n")
    return result


def finished_responses(folder: Path, cfg, quick: bool) -> dict | None:
    """A finished run's responses: its RESPONSES, measured now if the run lacks it and still has
    its checkpoint; None for a run whose weights are gone."""
    if (folder / RESPONSES).is_file():
        return json.loads((folder / RESPONSES).read_text())
    if (folder / LAST).is_file():
        return write_responses(folder, cfg, quick)
    return None


# --- The experiment ------------------------------------------------------------------------------


def responses(settings: Settings) -> str:
    """Figure 7 from the degradation runs in OUT: the first seed of each network with responses."""
    from .degradation import DEGRADATION_EPOCHS

    epochs = settings.epochs or DEGRADATION_EPOCHS
    # the runs' length is what tells a finished run, and both recipes give the same length
    settings = replace(settings, recipe=settings.recipe or DEFAULT_RECIPE["degradation"])
    found, missing = {}, []
    for model in FIGURE7:
        for seed in range(settings.seeds or 1):
            folder, cfg = placed(Run(f"{model}-seed{seed}", run_config(settings, model, seed, epochs)), settings.out,
                                 settings.quick)
            result = finished_responses(folder, cfg, settings.quick) if is_finished(folder, cfg) else None
            if result is not None:
                found[model] = result
                break
        else:
            missing.append(model)
    stds = {model: [layer["std"] for layer in result["layers"]] for model, result in found.items()}
    rows = [_row(model, found[model]) for model in found]
    figure = settings.out / "responses.png"
    if stds:
        plot_responses(stds, figure, settings.data)
    seeds = ", ".join(f"{model} seed {found[model]['seed']}" for model in found) or "none"
    return (f"The std of each 3x3 layer's responses (after BN, before the ReLU or the addition), pooled over "
            f"every element of the {settings.data} test set, of the final weights of the degradation runs in OUT "
            f"({epochs} epochs, the moving average of the weights where the recipe keeps one): {seeds}. "
            f"Medians and ranges leave out layer 1, which is the same in every net (the stem's conv).\n\n"
            + (markdown(["network", "3x3 layers", "layer 1", "median, layers 2..", "range, layers 2..",
                         "top 3 ranked", "BN cross-check: measured against predicted, median gap",
                         "paper's Figure 7 (read off)"], rows) if rows else "No run has its responses yet.")
            + (f"\n\nNot measured (no finished run with its weights): {', '.join(missing)}." if missing else "")
            + "\n\n" + _verdict(stds)
            + (f"\n\n![responses]({figure.name})\n" if stds else "\n"))


def _row(model: str, result: dict) -> list[str]:
    stds = [layer["std"] for layer in result["layers"]]
    rest = stds[1:]
    ratios = [abs(layer["std"] / layer["predicted"] - 1) for layer in result["layers"] if layer["predicted"] > 0]
    top = sorted(stds, reverse=True)[:3]
    return [model, str(len(stds)), f"{stds[0]:.2f}", f"{statistics.median(rest):.2f}",
            f"{min(rest):.2f}-{max(rest):.2f}", ", ".join(f"{v:.2f}" for v in top),
            f"{statistics.median(ratios):.1%}" if ratios else "-", PAPER_VALUES[model]]


def _median(stds: dict[str, list[float]], model: str) -> float:
    return statistics.median(stds[model][1:])


def _verdict(stds: dict[str, list[float]]) -> str:
    """The paper's two claims, each on the medians over layers 2.. (yes, or **no**, with the numbers)."""
    lines = []
    for depth in (20, 56):
        plain, resnet = f"plain{depth}", f"resnet{depth}"
        if plain in stds and resnet in stds:
            ratio = _median(stds, plain) / _median(stds, resnet)
            lines.append((ratio > 1, f"ResNet-{depth} responds less than plain-{depth}: median "
                                     f"{_median(stds, resnet):.2f} against {_median(stds, plain):.2f} "
                                     f"(plain/ResNet {ratio:.2f}x; the paper's figure about 1.5-2x)"))
    deep = [model for model in ("resnet20", "resnet56", "resnet110") if model in stds]
    if len(deep) >= 2:
        medians = [_median(stds, model) for model in deep]
        falling = all(a > b for a, b in zip(medians, medians[1:]))
        named = [f"{m:.2f} (ResNet-{model.removeprefix('resnet')})" for m, model in zip(medians, deep)]
        lines.append((falling, "the deeper ResNet responds less: median " + (" > " if falling else ", ").join(named)))
    if not lines:
        return "The paper's claims are not checked yet: no pair of networks has its responses."
    layer1 = [values[0] for values in stds.values()]
    return ("The paper's claims on these runs:\n\n"
            + "\n".join(f"- {'yes' if ok else '**no**'}: {text}" for ok, text in lines)
            + f"\n\nLayer 1 (the stem's 3x3 conv): {min(layer1):.2f}-{max(layer1):.2f} across the networks, "
              f"against about {PAPER_LAYER1} in every net of the paper's figure.")


def plot_responses(stds: dict[str, list[float]], path: Path, data: str) -> None:
    """Figure 7's layout: top, each layer's std in the network's order; bottom, the same values
    ranked in descending order. Plain nets dashed, ResNets solid, one colour per depth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    depths = sorted({int(model.removeprefix("plain").removeprefix("resnet")) for model in stds})
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), dpi=120)
    for model, values in stds.items():
        plain = model.startswith("plain")
        depth = int(model.removeprefix("plain").removeprefix("resnet"))
        style = dict(color=f"C{depths.index(depth)}", linestyle="--" if plain else "-", linewidth=1.2,
                     label=f"{'plain' if plain else 'ResNet'}-{depth}")
        layers = range(1, len(values) + 1)
        top.plot(layers, values, **style)
        bottom.plot(layers, sorted(values, reverse=True), **style)
    top.set(xlabel="layer index (original)", ylabel="std", title=f"layer responses on {data}")
    bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)
