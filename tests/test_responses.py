"""Figure 7's measurement: which layers, the pooled std, and the cross-check from BN's parameters."""

import pytest
import torch

from conftest import calibrate_batchnorm, randomize_batchnorm
from resnetlab import create_model
from resnetlab.reproduce.responses import measure_responses, predicted_std, response_layers


@pytest.mark.parametrize("family", ["plain", "resnet"])
@pytest.mark.parametrize("depth", [20, 56, 110])
def test_the_hooks_pick_the_6n_plus_1_three_by_three_layers(family, depth):
    model = create_model(f"{family}{depth}")
    layers = response_layers(model)
    assert len(layers) == depth - 1  # 6n+1: the stem's conv and the 6n convs of the blocks, not the fc
    assert layers[0] == ("conv1", model.bn1)
    bns = [bn for _, bn in layers]
    assert len({id(bn) for bn in bns}) == len(bns)
    assert bns[1:] == [bn for block in model.blocks() for bn in (block.bn1, block.bn2)]


def test_imagenet_nets_count_their_3x3_convs_only():
    # the 7x7 stem, the 1x1 convs of a bottleneck and the projections are not 3x3 layers
    assert len(response_layers(create_model("resnet18"))) == 16
    assert [name for name, _ in response_layers(create_model("resnet50"))][:2] == ["conv2_x.0.bn2", "conv2_x.1.bn2"]
    assert len(response_layers(create_model("resnet50"))) == 16


def direct_responses(model, x):
    """Every 3x3 layer's BN output, by walking the network by hand (no hooks)."""
    relu = torch.nn.functional.relu
    found = [model.bn1(model.conv1(x))]
    h = relu(found[-1])
    for block in model.blocks():
        found.append(block.bn1(block.conv1(h)))
        found.append(block.bn2(block.conv2(relu(found[-1]))))
        h = block._finish(found[-1].clone(), h)  # a plain block's ReLU works in place
    return found


@pytest.mark.parametrize("name", ["plain20", "resnet20"])
def test_the_pooled_std_equals_a_direct_computation(name):
    model = randomize_batchnorm(create_model(name, in_chans=1)).eval()
    x = torch.randn(6, 1, 28, 28)
    measured = measure_responses(model, x.split(4))  # two batches, summed across them
    with torch.no_grad():
        direct = [values.double().std(unbiased=False).item() for values in direct_responses(model, x)]
    assert len(measured) == len(direct) == 19
    assert [layer["std"] for layer in measured] == pytest.approx(direct, rel=1e-5)
    assert measured[1]["elements"] == 6 * 16 * 28 * 28


def test_the_bn_parameters_predict_the_std_when_its_statistics_are_the_data_s():
    model = randomize_batchnorm(create_model("resnet20", in_chans=1))
    x = torch.randn(64, 1, 28, 28)
    calibrate_batchnorm(model, x)  # running statistics = the batch's: each BN input normalised exactly
    measured = measure_responses(model, [x])
    for layer in measured:
        assert layer["std"] == pytest.approx(layer["predicted"], rel=1e-2), layer["layer"]
    bn = model.bn1
    assert predicted_std(bn) == pytest.approx(
        (bn.weight.double().square().mean() + bn.bias.double().var(unbiased=False)).sqrt().item())
