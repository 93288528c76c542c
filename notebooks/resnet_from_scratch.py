# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ResNet from scratch, checked against timm at every step
#
# We build the networks of He, Zhang, Ren and Sun, *Deep Residual Learning for Image Recognition*
# ([arXiv:1512.03385](https://arxiv.org/abs/1512.03385)), with the paper open beside this notebook
# and timm's `resnet.py` as the reference. Every piece we write is proven equal to timm's by
# copying timm's weights into it and comparing outputs, and at the end to
# [resnetlab](../README.md), for what timm does not have (shortcut option A, the paper's v1
# bottleneck, the CIFAR family).
#
# Each step ends with a check that fails loudly on the classic mistakes: a stride on the wrong
# conv, a ReLU before the addition, a projection without BatchNorm, a missing max pool. Lines
# starting with `check:` are those checks passing.
#
# The steps:
# 1. `BasicBlock` (Figure 2)
# 2. the shortcut when the shape changes: options A, B and C (section 3.3, Table 3)
# 3. the stem, `make_blocks`, ResNet-18 and ResNet-34 (Table 1)
# 4. the homework: `Bottleneck`, ResNet-50/101/152, v1 and v1.5, multiply-adds
# 5. the CIFAR family, 6n+2 layers (section 4.2, Table 6)
# 6. train our own ResNet-20 on Fashion-MNIST
# 7. questions
#
# It runs top to bottom in about a minute on two CPU cores, offline.

# %%
import time

import matplotlib.pyplot as plt
import timm
import torch
import torch.nn.functional as F
from torch import nn

torch.manual_seed(0)

# %% [markdown]
# Two helpers do all the checking. A freshly made BatchNorm is the identity in eval mode (mean 0,
# variance 1, scale 1, shift 0), so a network with a BN missing or misplaced would still pass a
# comparison. `randomize_bn_` gives every BN random statistics first. `copy_weights` loads timm's
# tensors into ours by name: we use timm's module names (`conv1`, `bn1`, `downsample`, `layer1`,
# ...), so a missing or extra layer shows up as a name that does not match.

# %%
def randomize_bn_(model, seed=0):
    """Random running statistics and affine parameters in every BatchNorm."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


def copy_weights(ours, theirs):
    """Load `theirs`' weights into `ours`: every name and shape must match."""
    mine, reference = ours.state_dict(), theirs.state_dict()
    missing, extra = sorted(set(reference) - set(mine)), sorted(set(mine) - set(reference))
    assert not missing and not extra, f"timm has {missing[:4]} that we lack; we have {extra[:4]} that timm lacks"
    for name, tensor in reference.items():
        assert mine[name].shape == tensor.shape, f"{name}: ours {tuple(mine[name].shape)}, timm {tuple(tensor.shape)}"
    ours.load_state_dict(reference)
    return ours


def check_same(what, ours, theirs, x, tol=1e-5):
    """Assert that two modules (in eval mode) give the same output for x."""
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    assert a.shape == b.shape, f"{what}: output shape {tuple(a.shape)}, expected {tuple(b.shape)}"
    error = ((a - b).abs().max() / b.abs().max()).item()
    assert error < tol, f"{what}: outputs differ, relative error {error:.1e}"
    print(f"check: {what} gives the reference's output, shape {tuple(a.shape)}")
    print(f"       (largest difference {error:.1e} of the largest output)")


# %% [markdown]
# ## 1. The BasicBlock (section 3.2, Figure 2)
#
# The block learns a residual F(x) and adds its input back: y = F(x, {W_i}) + x (equation 1).
# F is two 3x3 convs with BN and a ReLU between them; the addition is an element-wise
# shortcut, and the second ReLU comes *after* the addition (Figure 2). BN follows every conv,
# before the activation (section 3.4).
#
# The shortcut is passed in: the identity here, a projection in step 2.

# %%
class BasicBlock(nn.Module):
    expansion = 1  # output channels = width * expansion

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample  # None: the identity shortcut

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)  # ReLU after the addition


# %% [markdown]
# timm's first block of ResNet-18 is the same thing. Take it from a timm ResNet-18 (random
# weights: no download), give its BNs random statistics, copy its weights into ours and compare.

# %%
timm18 = randomize_bn_(timm.create_model("resnet18"))
block = copy_weights(BasicBlock(64, 64), timm18.layer1[0])
x = torch.randn(2, 64, 56, 56)
check_same("BasicBlock(64, 64)", block, timm18.layer1[0], x)

# %% [markdown]
# ## 2. When the shape changes: shortcut options A, B and C (section 3.3)
#
# The first block of conv3_x halves the resolution (stride 2) and doubles the channels, so x
# cannot be added to F(x) as it is. The paper gives three options:
# - **A**: keep the identity, subsample it with the stride and pad the extra channels with zeros.
#   No parameters.
# - **B**: a projection W_s x (equation 2) where the shape changes, the identity elsewhere. The
#   projection is a 1x1 conv with the stride, followed by BN like every conv.
# - **C**: a projection on every block.
#
# B is what ResNet-18..152 use, in the paper and in timm.

# %%
def projection(in_channels, out_channels, stride):
    """Options B and C: W_s, a 1x1 conv with the block's stride, then BN."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


block = copy_weights(BasicBlock(64, 128, stride=2, downsample=projection(64, 128, 2)), timm18.layer2[0])
check_same("BasicBlock(64, 128, stride 2) with a projection", block, timm18.layer2[0], torch.randn(2, 64, 56, 56))


# %% [markdown]
# Option A has no counterpart in timm, so we check it against what it should compute, and later
# against resnetlab.

# %%
class ZeroPadShortcut(nn.Module):
    """Option A: the identity, subsampled by the stride, with zero channels appended."""

    def __init__(self, stride, extra_channels):
        super().__init__()
        self.stride, self.extra_channels = stride, extra_channels

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads the channel dimension


x = torch.randn(2, 16, 32, 32)
y = ZeroPadShortcut(2, 16)(x)
assert y.shape == (2, 32, 16, 16)
assert torch.equal(y[:, :16], x[:, :, ::2, ::2]) and not y[:, 16:].any()
print("check: option A keeps every second pixel of each channel and adds 16 zero channels")

# %% [markdown]
# What the options cost: section 3.3 calls A parameter-free and says C's projections add
# parameters for little gain (Table 3: top-1 error 25.03 for A, 24.52 for B, 24.19 for C on
# ResNet-34). We count them once we have the whole network (step 3).
#
# ## 3. The stem, `make_blocks`, and the network (Table 1)
#
# Table 1: conv1 is a 7x7 conv with 64 filters and stride 2; conv2_x starts with a 3x3 max pool
# of stride 2. Then come four stages, conv2_x .. conv5_x, with 64, 128, 256 and 512 filters;
# "downsampling is performed by conv3_1, conv4_1, and conv5_1 with a stride of 2". The head is
# a global average pool and a 1000-way fully connected layer.
#
# `make_blocks` builds one stage from its number of blocks; a list of four numbers then makes
# every network of Table 1: [2, 2, 2, 2] is ResNet-18, [3, 4, 6, 3] is ResNet-34. The stages are
# named `layer1` .. `layer4` as in timm (and torchvision), so that weights load by name: they are
# the paper's conv2_x .. conv5_x.

# %%
def make_blocks(block, in_channels, width, num_blocks, stride, shortcut="B"):
    """One stage: the first block takes the stride (and the new width), the others keep them."""
    blocks = []
    for i in range(num_blocks):
        out_channels = width * block.expansion
        shape_changes = (stride if i == 0 else 1) != 1 or in_channels != out_channels
        if shortcut == "C" or (shortcut == "B" and shape_changes):
            downsample = projection(in_channels, out_channels, stride if i == 0 else 1)
        elif shortcut == "A" and shape_changes:
            downsample = ZeroPadShortcut(stride if i == 0 else 1, out_channels - in_channels)
        else:
            downsample = None
        blocks.append(block(in_channels, width, stride if i == 0 else 1, downsample))
        in_channels = out_channels
    return nn.Sequential(*blocks)


# %%
class ResNet(nn.Module):
    def __init__(self, block, layers, widths=(64, 128, 256, 512), num_classes=1000, in_chans=3,
                 stem="imagenet", shortcut="B"):
        super().__init__()
        stem_width = widths[0]
        if stem == "imagenet":  # Table 1: 7x7/2 conv, then a 3x3/2 max pool
            self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        else:  # CIFAR (section 4.2): one 3x3 conv, no pooling
            self.conv1 = nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        in_channels = stem_width
        for i, (num_blocks, width) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2  # conv3_1, conv4_1, conv5_1 halve the resolution
            self.add_module(f"layer{i + 1}", make_blocks(block, in_channels, width, num_blocks, stride, shortcut))
            in_channels = width * block.expansion
        self.num_stages = len(layers)
        self.fc = nn.Linear(in_channels, num_classes)

    def stages(self):
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))  # global average pool, then the classifier


# %% [markdown]
# The output size of each stage, as Table 1 lists it for a 224x224 image:

# %%
resnet18 = ResNet(BasicBlock, [2, 2, 2, 2])
x = torch.randn(1, 3, 224, 224)
with torch.no_grad():
    out = resnet18.relu(resnet18.bn1(resnet18.conv1(x)))
    sizes = {"conv1": tuple(out.shape[1:])}
    out = resnet18.maxpool(out)
    for i, stage in enumerate(resnet18.stages()):
        out = stage(out)
        sizes[f"conv{i + 2}_x"] = tuple(out.shape[1:])
for name, size in sizes.items():
    print(f"{name:8} {size[1]}x{size[2]}, {size[0]} channels")
assert [s[1] for s in sizes.values()] == [112, 56, 28, 14, 7], "Table 1: 112, 56, 28, 14, 7"
print("check: every stage's output size is Table 1's")

# %% [markdown]
# Now the whole network against timm's, logits and all:

# %%
for name, layers in (("resnet18", [2, 2, 2, 2]), ("resnet34", [3, 4, 6, 3])):
    theirs = randomize_bn_(timm.create_model(name))
    ours = copy_weights(ResNet(BasicBlock, layers), theirs)
    check_same(f"{name} logits", ours, theirs, torch.randn(2, 3, 224, 224))


# %% [markdown]
# The parameter counts of the three shortcut options on ResNet-34. B adds three projections (one
# per change of shape), C adds sixteen (one per block; section 3.3 counts thirteen *extra*
# ones, since three are B's).

# %%
def count_params(model):
    return sum(p.numel() for p in model.parameters())


params = {option: count_params(ResNet(BasicBlock, [3, 4, 6, 3], shortcut=option)) for option in "ABC"}
for option, count in params.items():
    print(f"ResNet-34, option {option}: {count:>10,} parameters")
assert params["B"] == count_params(timm.create_model("resnet34")) == 21_797_672
assert params["A"] < params["B"] < params["C"]
print("check: option B has timm's 21,797,672 parameters; A has fewer, C more")


# %% [markdown]
# ## 4. The homework: the Bottleneck, ResNet-50, 101 and 152
#
# Section 3.3, "Deeper Bottleneck Architectures": for the deeper nets each block is a stack of
# three layers, 1x1, 3x3 and 1x1 convs, "where the 1x1 layers are responsible for reducing and
# then increasing (restoring) dimensions" (Figure 5, right). The block's output has 4x its width.
#
# Where does the stride go in the first block of a stage? The paper puts it on the first 1x1
# conv ("v1"). torchvision and timm put it on the 3x3 ("v1.5"): a strided 1x1 conv ignores three
# pixels out of four, a strided 3x3 sees them all. Every public set of ImageNet weights is v1.5.

# %%
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, width, stride=1, downsample=None, stride_in_1x1=False):
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride_3x3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class BottleneckV1(Bottleneck):
    """The paper's block: the stride on the first 1x1 conv."""

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__(in_channels, width, stride, downsample, stride_in_1x1=True)


# %% [markdown]
# The same `ResNet` and `make_blocks` build the deep nets: only the block changes. At 224x224
# all three would take a while on a CPU; a 64x64 image goes through the same layers.

# %%
BOTTLENECK_LAYERS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3], "resnet152": [3, 8, 36, 3]}
x = torch.randn(2, 3, 64, 64)
for name, layers in BOTTLENECK_LAYERS.items():
    theirs = randomize_bn_(timm.create_model(name))
    ours = copy_weights(ResNet(Bottleneck, layers), theirs)
    check_same(f"{name} (v1.5) logits", ours, theirs, x)

# %% [markdown]
# The paper's v1 has the same weights, so they load, but it computes something else:

# %%
theirs = randomize_bn_(timm.create_model("resnet50"))
v1 = copy_weights(ResNet(BottleneckV1, [3, 4, 6, 3]), theirs).eval()
with torch.no_grad():
    gap = ((v1(x) - theirs.eval()(x)).abs().max() / theirs(x).abs().max()).item()
assert gap > 1e-2, "v1 and v1.5 should differ"
print("check: v1 loads timm's v1.5 weights but gives other logits")
print(f"       (they differ by {gap:.0%} of the largest)")


# %% [markdown]
# ### Counting multiply-adds
#
# Table 1's last row gives each network's cost, "FLOPs": 3.6 x 10^9 for ResNet-34, 3.8 x 10^9
# for ResNet-50. These are multiply-adds of the convolutions and the fc layer. A conv layer does
# one multiply-add per output value per input value it looks at: out_channels x H_out x W_out
# x (in_channels x k x k). We count them with a forward hook on every conv and linear layer.

# %%
def count_macs(model, size=224):
    """Multiply-adds of the convs and the fc for one size x size image."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return total


# %%
TABLE1 = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], **BOTTLENECK_LAYERS}
print(f"{'network':10} {'Table 1':>8} {'v1 (ours)':>10} {'v1.5 (ours)':>12}")
macs = {}
for name, layers in LAYERS.items():
    if name in BOTTLENECK_LAYERS:
        v1, v15 = count_macs(ResNet(BottleneckV1, layers)), count_macs(ResNet(Bottleneck, layers))
    else:
        v1 = v15 = count_macs(ResNet(BasicBlock, layers))  # no 1x1 convs: v1 and v1.5 are one network
    macs[name] = (v1, v15)
    print(f"{name:10} {TABLE1[name]:>7.1f}G {v1 / 1e9:>9.2f}G {v15 / 1e9:>11.2f}G")
    assert abs(v1 / 1e9 - TABLE1[name]) / TABLE1[name] < 0.02, f"{name}: more than 2% off Table 1"
print(f"check: ResNet-50 costs {macs['resnet50'][0] / 1e9:.2f} G multiply-adds as the paper builds it "
      f"(Table 1: 3.8 G) and {macs['resnet50'][1] / 1e9:.2f} G as v1.5; every v1 count within 2% of Table 1")

# %% [markdown]
# ### Multiply-adds or FLOPs?
#
# Why do some tools print "4.1 GFLOPs" for ResNet-50 and others "8.2 GFLOPs", when Table 1
# says 3.8 x 10^9?
# - One multiply-add is two floating-point operations. The paper's "FLOPs" are multiply-adds;
#   tools such as fvcore and thop also report multiply-adds, under the name FLOPs or MACs.
# - torch's own counter, `torch.utils.flop_counter`, counts both operations: twice ours.
# - 4.1 against 3.8 is v1.5 against v1: the stride on the 3x3 makes that conv run at the
#   higher resolution.
# - BN, ReLU, the additions and the pooling add well under 1% and are left out by convention.

# %%
from torch.utils.flop_counter import FlopCounterMode

counter = FlopCounterMode(display=False)
with counter, torch.no_grad():
    ResNet(Bottleneck, [3, 4, 6, 3]).eval()(torch.randn(1, 3, 224, 224))
flops = counter.get_total_flops()
print(f"torch.utils.flop_counter: {flops / 1e9:.2f} GFLOPs for ResNet-50 v1.5")
assert flops == 2 * macs["resnet50"][1]
print("check: torch's FLOP count is exactly twice our multiply-adds")


# %% [markdown]
# ## 5. The CIFAR family: 6n+2 layers (section 4.2)
#
# For CIFAR-10 the paper uses a smaller network on 32x32 images: a 3x3 conv with 16 filters,
# then "a stack of 6n layers with 3x3 convolutions on the feature maps of sizes {32, 16, 8}
# respectively, with 2n layers for each feature map size" and 16, 32, 64 filters, then a global
# average pool and a 10-way fc: 6n+2 weighted layers. The shortcuts are option A everywhere, so a
# ResNet has exactly the parameters of its plain twin. Our `ResNet` builds it with the CIFAR stem
# and three stages.

# %%
def cifar_resnet(depth, num_classes=10, in_chans=3):
    assert (depth - 2) % 6 == 0, "CIFAR ResNets have 6n+2 layers"
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], widths=(16, 32, 64), num_classes=num_classes, in_chans=in_chans,
                  stem="cifar", shortcut="A")


TABLE6_PARAMS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
for depth, millions in TABLE6_PARAMS.items():
    count = count_params(cifar_resnet(depth))
    print(f"ResNet-{depth:<4} {count:>9,} parameters (Table 6: {millions}M)")
    assert round(count / 1e6, 1 if millions >= 1 else 2) == millions
print("check: every CIFAR ResNet has Table 6's parameter count")

# %% [markdown]
# ### Against resnetlab
#
# timm has neither option A, nor the CIFAR stem, nor the paper's v1 bottleneck. resnetlab has all
# three, and loads weights in timm's layout, so our networks can be checked against it the same
# way. This is the only place the notebook uses resnetlab's network code.

# %%
import warnings

import resnetlab


def check_against_resnetlab(what, ours, name, **overrides):
    randomize_bn_(ours)
    with warnings.catch_warnings():  # resnetlab warns that public weights are v1.5: ours are not
        warnings.simplefilter("ignore")
        reference = resnetlab.create_model(name, pretrained=ours.state_dict(), **overrides)
    size = 32 if name.startswith(("resnet20", "resnet56")) else 64
    check_same(f"{what} against resnetlab", ours, reference, torch.randn(2, 3, size, size))


check_against_resnetlab("ResNet-20, option A", cifar_resnet(20), "resnet20")
check_against_resnetlab("ResNet-56, option A", cifar_resnet(56), "resnet56")
check_against_resnetlab("ResNet-50 v1", ResNet(BottleneckV1, [3, 4, 6, 3]), "resnet50", stride_in_1x1=True)
check_against_resnetlab("ResNet-34, option C", ResNet(BasicBlock, [3, 4, 6, 3], shortcut="C"), "resnet34",
                        shortcut="C")

# %% [markdown]
# ## 6. Train our own ResNet-20 on Fashion-MNIST
#
# Fashion-MNIST: 28x28 grey images of clothes, 10 classes, 60,000 for training and 10,000 for
# testing. Our `cifar_resnet(20, in_chans=1)` takes them as they are: the global average pool
# accepts any size. resnetlab's loader reads the dataset (from Debian's `dataset-fashion-mnist`
# package where it is installed, else the official download).
#
# A short run on a subset of 12,000 images, with section 4.2's optimiser: SGD with momentum 0.9,
# weight decay 1e-4, batch 128. Two changes for a run this short:
# - instead of the paper's 64k iterations with two lr drops, the lr rises and falls once (a
#   one-cycle schedule), which reaches a good accuracy in far fewer steps;
# - no augmentation: section 4.2's pad-and-crop pays off over long training, but on three short
#   epochs it costs more than it gives (in a try with a peak lr of 0.2: 20.6% test error with it,
#   14.2% without).

# %%
from resnetlab.data import load_dataset

data = load_dataset("fashion-mnist")
train_x, train_y = data.train.images[:12_000].float() / 255, data.train.labels[:12_000]
test_x, test_y = data.test.images[:2_000].float() / 255, data.test.labels[:2_000]
mean, std = train_x.mean(), train_x.std()
print(train_x.shape, test_x.shape, data.classes)


def normalize(images):
    return (images - mean) / std


# %%
def test_error(model):
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(normalize(test_x[i:i + 500])).argmax(1) for i in range(0, len(test_x), 500)])
    return (predictions != test_y).float().mean().item() * 100


# %%
torch.manual_seed(0)
model = cifar_resnet(20, in_chans=1)
epochs, batch = 3, 128
steps = epochs * (len(train_x) // batch)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps, pct_start=0.15)
generator = torch.Generator().manual_seed(0)
history = {"step": [], "train_loss": [], "eval_step": [], "test_error": []}
start, step = time.perf_counter(), 0
for epoch in range(epochs):
    model.train()
    order = torch.randperm(len(train_x), generator=generator)
    for i in range(0, len(order) - batch + 1, batch):
        index = order[i:i + batch]
        loss = F.cross_entropy(model(normalize(train_x[index])), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        history["step"].append(step)
        history["train_loss"].append(loss.item())
    history["eval_step"].append(step)
    history["test_error"].append(test_error(model))
    print(f"epoch {epoch + 1}: test error {history['test_error'][-1]:.1f}%, {time.perf_counter() - start:.0f} s")

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=80)
smooth = torch.tensor(history["train_loss"]).unfold(0, 20, 1).mean(1)
left.plot(history["step"][19:], smooth)
left.set(xlabel="iteration", ylabel="training loss (mean of 20 steps)", title="our ResNet-20 on Fashion-MNIST")
right.plot(history["eval_step"], history["test_error"], "o-")
right.set(xlabel="iteration", ylabel="test error (%)", title="test error, 2,000 test images")
for axis in (left, right):
    axis.grid(alpha=0.3)
figure.tight_layout()
plt.show()

assert history["test_error"][-1] < 20, "the network should learn: under 20% error after three epochs"
print("check: our ResNet-20 learns Fashion-MNIST (test error under 20% after three short epochs)")

# %% [markdown]
# ### Where to go next
# - `resnetlab train` trains resnetlab's ResNet-20 on all of Fashion-MNIST with a tuned recipe
#   (about 94% test accuracy); `resnetlab train --help` lists every setting.
# - `resnetlab reproduce degradation` trains plain-20/56 and ResNet-20/56 for 30 epochs each and
#   draws the paper's Figure 6: the deeper plain net does *worse*, the deeper ResNet better.
#   The result, with every depth up to 110, is in [docs/results.md](../docs/results.md).
# - Change one thing and retrain: section 4.2's pad-and-crop augmentation over more epochs, option
#   B instead of A, a plain net (no addition in the blocks), a deeper net.

# %% [markdown]
# ## 7. Questions
#
# Answer each before you open its answer.
#
# 1. Where does the ReLU of a basic block go, relative to the addition, and what would change if
#    it came before?
#
# <details><summary>Answer</summary>
#
# After the addition (Figure 2): y = ReLU(F(x) + x). Before it, the branch could only add
# non-negative values to x, and the block's output could be negative; step 1's check fails.
# </details>
#
# 2. What is shortcut option A, and why does the CIFAR family use it?
#
# <details><summary>Answer</summary>
#
# The identity, subsampled with the block's stride, with zero channels appended where the width
# grows (section 3.3). It has no parameters, so each CIFAR ResNet has exactly the parameters of its
# plain twin, and Figure 6 compares networks that differ only by the shortcuts.
# </details>
#
# 3. Does the projection shortcut have BatchNorm?
#
# <details><summary>Answer</summary>
#
# Yes. Every conv is followed by BN (section 3.4), the 1x1 projection included, in the paper's
# model, timm and torchvision. Without it, the weights of timm's `downsample.1` have nowhere to go
# and step 2's check fails.
# </details>
#
# 4. Where does the max pool go, and what is the output size of each stage for a 224x224 image?
#
# <details><summary>Answer</summary>
#
# After the 7x7/2 conv, its BN and ReLU, at the start of conv2_x (Table 1): 3x3 with stride 2. The
# sizes are 112 (conv1), 56, 28, 14 and 7. The CIFAR networks have no max pool.
# </details>
#
# 5. In a bottleneck block of the first block of a stage, which conv takes the stride in the paper
#    and which in torchvision and timm? What does each cost for ResNet-50?
#
# <details><summary>Answer</summary>
#
# The paper (v1) strides the first 1x1 conv: 3.86 G multiply-adds. torchvision and timm (v1.5)
# stride the 3x3: 4.09 G, since that 3x3 then works at the higher resolution. The weights have the
# same shapes, so a v1 network loads v1.5 weights without complaint but computes something else.
# </details>
#
# 6. A tool prints 8.2 GFLOPs for ResNet-50, another 4.1 G; Table 1 says 3.8 x 10^9. Who is right?
#
# <details><summary>Answer</summary>
#
# All of them. 8.2 G counts multiplies and adds separately (torch's flop counter); 4.1 G counts
# multiply-adds, as the paper does, but of v1.5; 3.8 G is the paper's v1 in multiply-adds.
# </details>
#
# 7. Why does a freshly created network pass a comparison with a BN missing, and how did we make
#    the checks catch it?
#
# <details><summary>Answer</summary>
#
# A new BN in eval mode has mean 0, variance 1, scale 1 and shift 0: it is almost the identity.
# `randomize_bn_` gives every BN random statistics and affine parameters before the comparison.
# </details>
#
# 8. How many weighted layers has a CIFAR ResNet with n = 9 blocks per stage, and how many 3x3
#    conv layers?
#
# <details><summary>Answer</summary>
#
# 6n+2 = 56 weighted layers: the first conv, 6n = 54 convs in the blocks, and the fc. Of those,
# 6n+1 = 55 are 3x3 convs.
# </details>
#
# 9. ResNet-34 with option C has more parameters than with B. How many more projections, and
#    did they help in the paper?
#
# <details><summary>Answer</summary>
#
# Thirteen more (sixteen blocks, three of which already project under B). Table 3: 24.19% top-1
# error against 24.52%, a small gain that the paper judges not worth the cost; it uses B.
# </details>
