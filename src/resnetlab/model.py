"""The networks of He et al. 2015, "Deep Residual Learning for Image Recognition".

Reads top to bottom like the paper: the two residual blocks (Figure 5), the shortcut options
(section 3.3), the ImageNet and CIFAR stems (Table 1, section 4.2), the stages conv2_x.. built
from a layer list, and the head (global average pool, fc). One dataclass, `ResNetConfig`,
describes a network; `zoo.py` maps the paper's names to configs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C", "none")
STEMS = ("imagenet", "cifar")


@dataclass(frozen=True)
class ResNetConfig:
    """Everything that defines one network.

    block: "basic" (two 3x3 convs) or "bottleneck" (1x1, 3x3, 1x1 with 4x expansion).
    layers: blocks per stage, from conv2_x on (Table 1: 2,2,2,2 is ResNet-18).
    widths: width of each stage's 3x3 convs; a bottleneck stage outputs 4x this.
    stem: "imagenet" (7x7/2 conv, 3x3/2 max pool) or "cifar" (3x3 conv, section 4.2).
    shortcut: "A" zero-padded identity, "B" projection where the shape changes,
        "C" projection everywhere, "none" for the plain baselines (section 3.3).
    stride_in_1x1: True puts a bottleneck's stride on its first 1x1 conv as in the paper
        ("v1"); False puts it on the 3x3 as torchvision and timm do ("v1.5").
    zero_init_last: start each residual branch's last BN at zero, so every block begins
        as the identity (Goyal et al. 2017).
    drop_path_rate: stochastic depth, the drop rate of the last block; earlier blocks
        get linearly smaller rates (Huang et al. 2016).
    """

    block: str
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    stem: str = "imagenet"
    stem_width: int = 64
    shortcut: str = "B"
    stride_in_1x1: bool = False
    num_classes: int = 1000
    in_chans: int = 3
    zero_init_last: bool = False
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "widths", tuple(self.widths))
        _expect(self.block in BLOCKS, f"block must be one of {BLOCKS}, got {self.block!r}")
        _expect(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}")
        _expect(self.shortcut in SHORTCUTS, f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        _expect(
            len(self.layers) == len(self.widths) and len(self.layers) > 0,
            f"layers and widths must be non-empty and of equal length, got {self.layers} and {self.widths}",
        )
        for name in ("layers", "widths"):
            values = getattr(self, name)
            _expect(
                all(_is_int(v) and v > 0 for v in values),
                f"{name} must be positive integers, got {values}",
            )
        for name in ("stem_width", "in_chans"):
            value = getattr(self, name)
            _expect(_is_int(value) and value > 0, f"{name} must be a positive integer, got {value!r}")
        _expect(
            _is_int(self.num_classes) and self.num_classes >= 0,
            f"num_classes must be an integer >= 0 (0 means no classifier: the model returns "
            f"pooled features), got {self.num_classes!r}",
        )
        for name in ("stride_in_1x1", "zero_init_last"):
            _expect(isinstance(getattr(self, name), bool), f"{name} must be True or False, got {getattr(self, name)!r}")
        _expect(
            isinstance(self.drop_path_rate, (int, float)) and 0.0 <= self.drop_path_rate < 1.0,
            f"drop_path_rate must be a number in [0, 1), got {self.drop_path_rate!r}",
        )
        if self.shortcut == "none":
            # A plain net has no identity path: dropping its only path, or zeroing its only
            # signal, would cut the network.
            _expect(self.drop_path_rate == 0,
                    "drop_path_rate needs residual shortcuts; a plain net (shortcut='none') has none")
            _expect(not self.zero_init_last,
                    "zero_init_last needs residual shortcuts; in a plain net (shortcut='none') "
                    "it would zero the signal")

    @property
    def expansion(self) -> int:
        return Bottleneck.expansion if self.block == "bottleneck" else BasicBlock.expansion

    @property
    def num_features(self) -> int:
        """Channels of the final feature map, the input width of fc."""
        return self.widths[-1] * self.expansion

    @property
    def total_stride(self) -> int:
        stem = 4 if self.stem == "imagenet" else 1
        return stem * 2 ** (len(self.layers) - 1)

    def replace(self, **changes) -> "ResNetConfig":
        return dataclasses.replace(self, **changes)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


# --- Shortcuts (section 3.3) -------------------------------------------------------------


class ZeroPadShortcut(nn.Module):
    """Option A: identity, subsampled by the stride, with zeros for the extra channels."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class ProjectionShortcut(nn.Module):
    """Options B and C: W_s x, a strided 1x1 conv and BN (equation 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = conv1x1(in_channels, out_channels, stride)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def make_shortcut(option: str, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The shortcut of one block; None for a plain block."""
    if option == "none":
        return None
    shape_changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and shape_changes):
        return ProjectionShortcut(in_channels, out_channels, stride)
    if option == "A" and shape_changes:
        return ZeroPadShortcut(stride, out_channels - in_channels)
    return nn.Identity()


class DropPath(nn.Module):
    """Stochastic depth: drop a block's residual branch for a random subset of samples."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"


# --- Blocks (Figure 5) ---------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """y = relu(F(x) + shortcut(x)); without a shortcut, the plain block relu(F(x))."""

    def _finish(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            residual = self.drop_path(residual) + self.shortcut(x)
        return self.relu(residual)  # ReLU after the addition (Figure 2)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (Figure 5, left); ResNet-18/34 and the CIFAR family."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str, drop_path_rate: float = 0.0):
        super().__init__()
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, width, stride)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self._finish(out, x)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3, 1x1 restore to 4x the width (Figure 5, right); ResNet-50/101/152.

    The paper strides the first 1x1 conv (stride_in_1x1=True, "v1"). torchvision and timm
    stride the 3x3 instead ("v1.5"): it sees every input pixel, costs 4.1 instead of 3.9
    GFLOPs for ResNet-50 and is the layout of all public weights.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, shortcut: str,
                 drop_path_rate: float = 0.0, stride_in_1x1: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self._finish(out, x)


# --- The network (Table 1) -----------------------------------------------------------------


def make_stages(cfg: ResNetConfig) -> list[nn.Sequential]:
    """Build conv2_x, conv3_x, ... from the layer list.

    The first stage keeps the resolution; each later one halves it in its first block
    (conv3_1, conv4_1, conv5_1 have stride 2). Stochastic-depth rates grow linearly over
    all blocks of the network, from 0 to drop_path_rate.
    """
    if cfg.block == "bottleneck":
        block_type, options = Bottleneck, {"stride_in_1x1": cfg.stride_in_1x1}
    else:
        block_type, options = BasicBlock, {}
    total_blocks = sum(cfg.layers)
    in_channels = cfg.stem_width
    index = 0
    stages = []
    for stage_index, (num_blocks, width) in enumerate(zip(cfg.layers, cfg.widths)):
        blocks = []
        for block_index in range(num_blocks):
            stride = 2 if stage_index > 0 and block_index == 0 else 1
            rate = cfg.drop_path_rate * index / max(total_blocks - 1, 1)
            blocks.append(block_type(in_channels, width, stride, cfg.shortcut, rate, **options))
            in_channels = width * block_type.expansion
            index += 1
        stages.append(nn.Sequential(*blocks))
    return stages


class ResNet(nn.Module):
    """A ResNet (or its plain twin) built from a `ResNetConfig`.

    Module names follow the paper: conv1/bn1 (the stem), conv2_x .. conv5_x (CIFAR:
    conv2_x .. conv4_x), fc. The max pool, which Table 1 lists at the head of conv2_x, is
    kept as the stem's `maxpool` so that conv2_x holds only blocks, as in every weight file.
    """

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(cfg.in_chans, cfg.stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = conv3x3(cfg.in_chans, cfg.stem_width)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(cfg.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.stage_names = tuple(f"conv{i + 2}_x" for i in range(len(cfg.layers)))
        for name, stage in zip(self.stage_names, make_stages(cfg)):
            self.add_module(name, stage)
        self.num_features = cfg.num_features
        self.num_classes = cfg.num_classes
        self.fc = self._make_classifier(cfg.num_classes)
        self._init_weights()

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _init_weights(self) -> None:
        # He et al. 2015b (the paper's reference [13]): normal, std sqrt(2 / fan_out).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.cfg.zero_init_last:
            for block in self.blocks():
                nn.init.zeros_(block.last_bn.weight)

    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, name) for name in self.stage_names]

    def blocks(self) -> list[ResidualBlock]:
        return [block for stage in self.stages() for block in stage]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a TypeError/ValueError naming what was expected if x is not a valid batch."""
        expected = f"(N, {self.cfg.in_chans}, H, W)"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor of shape {expected}, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D batch of shape {expected}, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(
                f"expected a floating-point tensor, got {x.dtype}; convert images with "
                f"x.float() / 255 and normalise them first"
            )
        if x.shape[1] != self.cfg.in_chans:
            raise ValueError(
                f"expected {self.cfg.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                f"create the model with in_chans={x.shape[1]} to adapt it"
            )
        minimum = self.cfg.total_stride
        if x.shape[2] < minimum or x.shape[3] < minimum:
            # Below the total stride the last stage would see only zero padding.
            raise ValueError(
                f"expected images of at least {minimum}x{minimum} for this network (its total stride), "
                f"got {x.shape[2]}x{x.shape[3]}"
            )

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map, the output of the last stage."""
        self.check_input(x)
        x = self.maxpool(self.stem(x))
        for stage in self.stages():
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, then fc (skipped with pre_logits=True)."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every row of Table 1 in order: conv1 (before the max pool), then
        each stage conv2_x... The same list as timm's `features_only=True`."""
        self.check_input(x)
        x = self.stem(x)
        outputs = [x]
        x = self.maxpool(x)
        for stage in self.stages():
            x = stage(x)
            outputs.append(x)
        return outputs

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace fc by a freshly initialised one with num_classes outputs (0: none)."""
        self.cfg = self.cfg.replace(num_classes=num_classes)
        self.num_classes = num_classes
        reference = self.conv1.weight
        self.fc = self._make_classifier(num_classes).to(reference.device, reference.dtype)

    def freeze_backbone(self) -> None:
        """Train the classifier only (a linear probe): every other parameter stops learning, and
        every BatchNorm normalises with its running statistics, in training too, so the features
        do not depend on the batch and the statistics stay those of the pretrained weights."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(name.startswith("fc."))
        for module in list(self.modules()):
            for name, child in module.named_children():
                if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenBatchNorm2d):
                    frozen = FrozenBatchNorm2d(child.num_features, child.eps).to(child.weight.device)
                    frozen.load_state_dict(child.state_dict())
                    frozen.requires_grad_(False)
                    setattr(module, name, frozen)


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm fixed at its running statistics and affine parameters, in training mode too.
    Its state dict is BatchNorm2d's, so a checkpoint loads into either."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
