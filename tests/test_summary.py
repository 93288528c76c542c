"""The summary recomputes Table 1's multiply-adds by running the networks."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import resnetlab

# Table 1, "FLOPs" row (multiply-adds, 1e9), for the paper's v1 networks at 224x224.
TABLE1_MACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


@pytest.mark.parametrize("name", sorted(TABLE1_MACS))
def test_multiply_adds_within_2_percent_of_table1(name):
    table = resnetlab.summary(resnetlab.create_model(name, stride_in_1x1=True))
    assert table.macs / 1e9 == pytest.approx(TABLE1_MACS[name], rel=0.02)


def test_v15_resnet50_costs_4_09_g():
    table = resnetlab.summary(resnetlab.create_model("resnet50"))
    assert round(table.macs / 1e9, 2) == 4.09


def test_rows_follow_table1():
    model = resnetlab.create_model("resnet101")
    table = resnetlab.summary(model)
    assert [r.stage for r in table.rows] == ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x", "pool, fc"]
    assert [r.output_size[1:] for r in table.rows[:-1]] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]
    assert [r.blocks for r in table.rows[1:-1]] == [3, 4, 23, 3]
    assert table.params == sum(p.numel() for p in model.parameters())
    # The rows add up to what flop_counter counts for the whole network.
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 224, 224))
    assert table.macs * 2 == counter.get_total_flops()
    text = str(table)
    assert "conv4_x" in text and "44,549,160" in text and "7.801 G" in text


def test_cifar_summary_and_input_size():
    table = resnetlab.summary(resnetlab.create_model("resnet56"), input_size=(3, 32, 32))
    assert [r.output_size for r in table.rows[:-1]] == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert table.rows[-1].output_size == (10,)
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\)"):
        resnetlab.summary(resnetlab.create_model("resnet56"), input_size=(32, 32))
