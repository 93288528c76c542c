"""The zoo: names of DESIGN.md, create_model's contract, and the parameter counts of the
paper (Table 6) and of torchvision, recomputed from the built networks."""

import pytest
import torch
import torchvision

import resnetlab
from conftest import IMAGENET_MODELS

DESIGN_NAMES = (
    "resnet18 resnet34 resnet50 resnet101 resnet152 plain18 plain34 "
    "resnet20 resnet32 resnet44 resnet56 resnet110 resnet1202 plain20 plain32 plain44 plain56 plain110"
).split()


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_every_design_name_exists():
    assert set(DESIGN_NAMES) <= set(resnetlab.list_models())


@pytest.mark.parametrize("name", IMAGENET_MODELS)
def test_params_equal_torchvision(name):
    ours = resnetlab.create_model(name)
    theirs = getattr(torchvision.models, name)()
    assert count(ours) == count(theirs)


# Table 6: parameters of the CIFAR-10 ResNets, as printed (in millions).
TABLE6_PARAMS = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@pytest.mark.parametrize("depth", sorted(TABLE6_PARAMS))
def test_cifar_params_match_table6(depth):
    printed = TABLE6_PARAMS[depth]
    decimals = len(printed.split(".")[1])
    model = resnetlab.create_model(f"resnet{depth}")
    assert f"{count(model) / 1e6:.{decimals}f}" == printed
    assert model.cfg.shortcut == "A"


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_exactly_the_resnet_params(depth):
    resnet = resnetlab.create_model(f"resnet{depth}")
    plain = resnetlab.create_model(f"plain{depth}")
    assert count(plain) == count(resnet)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in resnet.named_parameters()]
    assert all(block.shortcut is None for block in plain.blocks())


def test_defaults_per_family():
    assert resnetlab.create_model("resnet18").fc.out_features == 1000
    assert resnetlab.create_model("resnet20").fc.out_features == 10
    assert resnetlab.create_model("resnet18", num_classes=7).fc.out_features == 7
    assert resnetlab.create_model("resnet18").cfg.shortcut == "B"
    assert resnetlab.create_model("plain34").cfg.shortcut == "none"


def test_module_names_follow_the_paper():
    names = dict(resnetlab.create_model("resnet50").named_children())
    assert {"conv1", "bn1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "fc"} <= set(names)
    cifar = dict(resnetlab.create_model("resnet20").named_children())
    assert {"conv2_x", "conv3_x", "conv4_x"} <= set(cifar) and "conv5_x" not in cifar


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*resnet50"):
        resnetlab.create_model("resnet5")
    with pytest.raises(TypeError, match="model name must be a string"):
        resnetlab.create_model(50)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"shortcut": "D"}, "shortcut must be one of"),
        ({"stride_in_1x1": "yes"}, "stride_in_1x1 must be True or False"),
        ({"drop_path_rate": 1.5}, r"drop_path_rate must be a number in \[0, 1\)"),
        ({"dropout": 0.1}, r"invalid override\(s\) \['dropout'\]"),
        ({"in_chans": 0}, "in_chans must be a positive integer"),
        ({"num_classes": -1}, "num_classes must be an integer >= 0"),
    ],
)
def test_invalid_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        resnetlab.create_model("resnet18", **overrides)


def test_plain_nets_refuse_residual_only_options():
    with pytest.raises(ValueError, match="drop_path_rate needs residual shortcuts"):
        resnetlab.create_model("plain20", drop_path_rate=0.1)
    with pytest.raises(ValueError, match="zero_init_last needs residual shortcuts"):
        resnetlab.create_model("plain20", zero_init_last=True)


@pytest.mark.parametrize("depth", [21, 6, 0])
def test_cifar_depth_must_be_6n_plus_2(depth):
    from resnetlab.zoo import cifar_config

    with pytest.raises(ValueError, match="6n\\+2"):
        cifar_config(depth)


def test_cifar_config_builds_any_6n_plus_2():
    from resnetlab.zoo import cifar_config

    model = resnetlab.ResNet(cifar_config(14))
    assert model.cfg.layers == (2, 2, 2)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_num_classes_zero_gives_pooled_features():
    model = resnetlab.create_model("resnet20", num_classes=0).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64)
