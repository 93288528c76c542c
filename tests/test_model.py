"""The network itself: every model trains (forward, backward, gradients), layouts and
compilers agree, the blocks are built as section 3.3 and Figure 5 say, bad input is named."""

import pytest
import torch
from torch import nn

import resnetlab
from conftest import calibrate_batchnorm, randomize_batchnorm, relative_error
from resnetlab.model import Bottleneck, ProjectionShortcut, ZeroPadShortcut


def small_input(model, batch=2):
    side = 64 if model.cfg.stem == "imagenet" else 16
    return torch.randn(batch, model.cfg.in_chans, side, side)


@pytest.mark.parametrize("name", resnetlab.list_models())
def test_forward_backward_every_model(name):
    model = resnetlab.create_model(name, num_classes=5).train()
    x = small_input(model)
    out = model(x)
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{param_name} has an all-zero gradient"


@pytest.mark.parametrize("name", resnetlab.list_models())
def test_channels_last_gives_the_same_output(name):
    # float64: deep plain nets amplify float32 rounding differences (by 1e3 for plain110),
    # which would hide what this checks, that the layout changes nothing.
    model = resnetlab.create_model(name).double()
    x = small_input(model, batch=8).double()
    calibrate_batchnorm(model, x)
    with torch.no_grad():
        expected = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        got = model_cl(x.to(memory_format=torch.channels_last))
    assert torch.isfinite(expected).all()
    assert relative_error(got, expected) < 1e-9


@pytest.mark.parametrize("name, side", [("resnet20", 32), ("resnet50", 64)])
def test_torch_compile_and_export(name, side):
    model = randomize_batchnorm(resnetlab.create_model(name)).eval()
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model)(x)
        exported = torch.export.export(model, (x,)).module()(x)
    assert relative_error(compiled, expected) < 1e-4
    assert relative_error(exported, expected) < 1e-5


def test_stage_outputs_follow_table1():
    model = resnetlab.create_model("resnet50").eval()
    outputs = model.stage_outputs(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape[1:]) for o in outputs] == [
        (64, 112, 112), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)
    ]


def test_forward_is_features_then_head():
    model = randomize_batchnorm(resnetlab.create_model("resnet18")).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        logits = model(x)
        assert features.shape == (2, 512, 2, 2)
        assert torch.allclose(pooled, features.mean((2, 3)))
        assert torch.allclose(logits, model.fc(pooled))
        assert torch.equal(model.stage_outputs(x)[-1], features)


def test_reset_classifier():
    model = resnetlab.create_model("resnet18").eval()
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.num_classes == 3
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)
    assert isinstance(model.fc, nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 512)


def test_shortcut_options_of_section_3_3():
    def shortcuts(model):
        return [type(b.shortcut) for b in model.blocks()]

    a = resnetlab.create_model("resnet34", shortcut="A")
    b = resnetlab.create_model("resnet34", shortcut="B")
    c = resnetlab.create_model("resnet34", shortcut="C")
    # Three stages change shape in ResNet-34 (conv3_1, conv4_1, conv5_1).
    assert shortcuts(a).count(ZeroPadShortcut) == 3 and ProjectionShortcut not in shortcuts(a)
    assert shortcuts(b).count(ProjectionShortcut) == 3 and shortcuts(b).count(nn.Identity) == 13
    assert set(shortcuts(c)) == {ProjectionShortcut}
    params = [sum(p.numel() for p in m.parameters()) for m in (a, b, c)]
    assert params[0] < params[1] < params[2]
    # Option A is parameter-free: exactly the plain net's parameters.
    assert params[0] == sum(p.numel() for p in resnetlab.create_model("plain34").parameters())


def test_option_a_is_a_strided_zero_padded_identity():
    shortcut = ZeroPadShortcut(stride=2, extra_channels=3)
    x = torch.randn(2, 4, 5, 5)
    y = shortcut(x)
    assert y.shape == (2, 7, 3, 3)
    assert torch.equal(y[:, :4], x[:, :, ::2, ::2])
    assert not y[:, 4:].any()


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_bottleneck_stride_placement(stride_in_1x1):
    model = resnetlab.create_model("resnet50", stride_in_1x1=stride_in_1x1)
    first = model.conv3_x[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == ((2, 2) if stride_in_1x1 else (1, 1))
    assert first.conv2.stride == ((1, 1) if stride_in_1x1 else (2, 2))
    assert first.shortcut.conv.stride == (2, 2)


def test_he_init_and_zero_init_last():
    model = resnetlab.create_model("resnet50")
    weight = model.conv2_x[0].conv2.weight  # 3x3, 64 -> 64: fan_out 576
    assert abs(weight.std().item() - (2 / 576) ** 0.5) < 0.005
    assert all(block.bn3.weight.eq(1).all() for block in model.blocks())
    zero = resnetlab.create_model("resnet50", zero_init_last=True)
    assert all(not block.bn3.weight.any() for block in zero.blocks())
    # With the residual branch at zero, each block starts as relu(shortcut(x)).
    block = resnetlab.create_model("resnet20", zero_init_last=True).conv2_x[0].eval()
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(block(x), torch.relu(x))


def test_drop_path_grows_linearly_and_acts_only_in_training():
    model = resnetlab.create_model("resnet56", drop_path_rate=0.2)
    rates = [getattr(b.drop_path, "rate", 0.0) for b in model.blocks()]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert max(steps) - min(steps) < 1e-9
    x = torch.randn(64, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        first = model(x)
        torch.manual_seed(2)
        second = model(x)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    "x, error, message",
    [
        (torch.randn(3, 64, 64), ValueError, r"expected a 4-D batch of shape \(N, 3, H, W\)"),
        (torch.randn(1, 1, 64, 64), ValueError, "expected 3 input channels, got 1"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), TypeError, "expected a floating-point tensor"),
        (torch.randn(1, 3, 0, 64), ValueError, "at least 32x32"),
        (torch.randn(1, 3, 16, 16), ValueError, "at least 32x32"),
        ([[1.0]], TypeError, "expected a torch.Tensor"),
    ],
)
def test_bad_input_names_what_was_expected(x, error, message):
    model = resnetlab.create_model("resnet18")
    with pytest.raises(error, match=message):
        model(x)
    with pytest.raises(error, match=message):
        model.stage_outputs(x)
