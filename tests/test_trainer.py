"""resnetlab.train: the trainer from Python with a network of one's own and tensors in memory,
resumed exactly; bad input named."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.data import load_dataset


class TinyNet(nn.Module):
    """A learner's own network: no resnetlab class anywhere."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def tensors():
    """2,000 training and 500 test images of the real Fashion-MNIST, as (N, H, W) uint8 tensors."""
    full = load_dataset("fashion-mnist", download=False)
    return (full.train.images[:2000, 0], full.train.labels[:2000], full.test.images[:500, 0], full.test.labels[:500])


def test_a_custom_module_trains_on_tensors_and_is_returned_trained(tmp_path, tensors):
    torch.manual_seed(0)
    net = TinyNet()
    result = resnetlab.train(model=net, data=tensors, out=tmp_path / "run", max_steps=90, batch_size=64,
                             lr=0.2, ema_decay=0.0, progress=False)
    assert result.final_acc1 > 40.0  # chance is 10%; this small network reaches about 60% in 90 steps
    assert result.model is net and not net.training
    assert result.steps == 90 and result.metrics[-1]["test_acc1"] == result.final_acc1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"], config["data"]) == ("custom:TinyNet", "tensors")
    # the trained module is the checkpoint's network
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(value, saved[key]) for key, value in net.state_dict().items())
    # the CLI cannot rebuild the module, and says what does
    run = subprocess.run([sys.executable, "-m", "resnetlab", "eval", "--checkpoint", str(tmp_path / "run" / "last.pt")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "nn.Module (TinyNet)" in run.stderr and "Traceback" not in run.stderr


def test_a_custom_module_resumes_bitwise_from_python(tmp_path, tensors):
    """20 steps, then resumed to 40, equal to 40 at once (a constant lr: extending changes no step)."""
    settings = dict(batch_size=64, lr=0.02, schedule="step", warmup_fraction=0.0, ema_decay=0.0, progress=False,
                    data=tensors)
    torch.manual_seed(1)
    whole = resnetlab.train(model=TinyNet(), out=tmp_path / "whole", max_steps=40, **settings)
    torch.manual_seed(1)
    resnetlab.train(model=TinyNet(), out=tmp_path / "part", max_steps=20, **settings)
    with pytest.warns(UserWarning, match="extending the run"):
        resumed = resnetlab.train(model=TinyNet(), out=tmp_path / "part", max_steps=40, resume=True, **settings)
    assert resumed.steps == 40
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_zoo_network_by_name_on_float_tensors(tmp_path, tensors):
    train_x, train_y, test_x, test_y = tensors
    result = resnetlab.train(model="resnet20", data={"train_images": train_x.float() / 255, "train_labels": train_y,
                                                     "test_images": test_x.float() / 255, "test_labels": test_y},
                             out=tmp_path / "run", max_steps=12, batch_size=64, progress=False)
    assert isinstance(result.model, resnetlab.ResNet) and result.out == tmp_path / "run"
    assert (tmp_path / "run" / "best.pt").is_file() and 0 < result.best_acc1 <= 100


@pytest.mark.parametrize("model, data, message", [
    (nn.Linear(784, 10), None, "Linear failed on a batch of the data.s images"),
    (TinyNet(classes=7), None, r"class logits of shape \(N, 10\).*returned \(2, 7\)"),
    ("resnet20", "floats", r"float train images must be in \[0, 1\]"),
    ("resnet20", "short", "train labels must be one integer per image"),
    ("resnet20", "three", r"\(train_images, train_labels, test_images, test_labels\)"),
])
def test_bad_models_and_data_are_named(tmp_path, tensors, model, data, message):
    train_x, train_y, test_x, test_y = tensors
    data = {None: tensors, "floats": (train_x.float(), train_y, test_x.float(), test_y),
            "short": (train_x, train_y[:-1], test_x, test_y), "three": tensors[:3]}[data]
    with pytest.raises((ValueError, TypeError), match=message):
        resnetlab.train(model=model, data=data, out=tmp_path / "run", max_steps=2, progress=False)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_settings_of_the_zoo_networks_are_refused_for_a_module(tmp_path, tensors):
    with pytest.raises(ValueError, match="resnetlab's own networks"):
        resnetlab.train(model=TinyNet(), data=tensors, out=tmp_path / "run", pretrained="timm", progress=False)
