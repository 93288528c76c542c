"""Model names -> configs: Table 1 (ImageNet), section 4.2 (CIFAR 6n+2) and their plain twins."""

from __future__ import annotations

import dataclasses
import difflib

from torch import nn

from .model import ResNet, ResNetConfig

# Table 1: blocks per stage conv2_x..conv5_x.
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)

# Section 4.2: 6n+2 layers, n basic blocks on each of three stages of 16, 32, 64 filters.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)

# The paper's plain baselines (Table 2, Figure 6). Plain-1202 was never trained in the paper.
PLAIN_IMAGENET_DEPTHS = (18, 34)
PLAIN_CIFAR_DEPTHS = (20, 32, 44, 56, 110)


def imagenet_config(depth: int, shortcut: str = "B") -> ResNetConfig:
    """Table 1's ResNet-`depth` (18, 34, 50, 101 or 152), 1000 classes."""
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"ImageNet ResNet depth must be one of {sorted(IMAGENET_DEPTHS)}, got {depth}")
    block, layers = IMAGENET_DEPTHS[depth]
    return ResNetConfig(block=block, layers=layers, widths=IMAGENET_WIDTHS, stem="imagenet",
                        stem_width=64, shortcut=shortcut, num_classes=1000)


def cifar_config(depth: int, shortcut: str = "A") -> ResNetConfig:
    """Section 4.2's `depth`-layer network (depth = 6n+2), 10 classes."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, 110, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNetConfig(block="basic", layers=(n, n, n), widths=CIFAR_WIDTHS, stem="cifar",
                        stem_width=16, shortcut=shortcut, num_classes=10)


def _registry() -> dict[str, ResNetConfig]:
    models = {}
    for depth in IMAGENET_DEPTHS:
        models[f"resnet{depth}"] = imagenet_config(depth)
    for depth in PLAIN_IMAGENET_DEPTHS:
        models[f"plain{depth}"] = imagenet_config(depth, shortcut="none")
    for depth in CIFAR_DEPTHS:
        models[f"resnet{depth}"] = cifar_config(depth)
    for depth in PLAIN_CIFAR_DEPTHS:
        models[f"plain{depth}"] = cifar_config(depth, shortcut="none")
    return models


MODEL_CONFIGS: dict[str, ResNetConfig] = _registry()

# Fields a caller may change through create_model(**overrides).
OVERRIDES = ("shortcut", "stride_in_1x1", "zero_init_last", "drop_path_rate")


def list_models() -> list[str]:
    """Every model name create_model accepts, ImageNet family first."""
    return list(MODEL_CONFIGS)


def get_config(name: str) -> ResNetConfig:
    """The config of a named model; unknown names get a ValueError with close matches."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    if name not in MODEL_CONFIGS:
        close = difflib.get_close_matches(name, MODEL_CONFIGS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (list_models() gives all {len(MODEL_CONFIGS)} names)")
    return MODEL_CONFIGS[name]


def create_model(name: str, *, num_classes: int | None = None, in_chans: int = 3,
                 pretrained=None, **overrides) -> ResNet:
    """Build a named network, optionally loading weights.

    num_classes: default 1000 (ImageNet family) or 10 (CIFAR family); 0 for no classifier.
    pretrained: a state dict, a weights file (.pt/.pth/.bin/.safetensors in resnetlab,
        torchvision or timm layout), or "torchvision"/"timm" for the official ImageNet weights.
    overrides: shortcut ("A", "B", "C", "none"), stride_in_1x1, zero_init_last, drop_path_rate.
    """
    cfg = get_config(name)
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"invalid override(s) {unknown} for {name}; allowed: {', '.join(OVERRIDES)}")
    changes = dict(overrides, in_chans=in_chans)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    cfg = dataclasses.replace(cfg, **changes)
    model = ResNet(cfg)
    model.model_name = name
    if pretrained is not None:
        from .weights import load_pretrained

        load_pretrained(model, pretrained)
    return model


def model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)
