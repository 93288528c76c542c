"""torch.hub: every model name loads from a checkout as create_model makes it."""

import importlib.util
from pathlib import Path

import pytest
import torch

import resnetlab

REPO = Path(__file__).resolve().parents[1]


def test_hubconf_offers_every_model_and_nothing_else():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # what torch.hub.list shows: the callables of hubconf.py not starting with "_"
    entry_points = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")]
    assert sorted(entry_points) == sorted(resnetlab.list_models())
    assert hubconf.dependencies == ["torch", "numpy", "safetensors"]


def test_torch_hub_load_is_create_model(tmp_path):
    torch.manual_seed(0)
    hub = torch.hub.load(str(REPO), "resnet50", source="local", num_classes=10, stride_in_1x1=True)
    torch.manual_seed(0)
    direct = resnetlab.create_model("resnet50", num_classes=10, stride_in_1x1=True)
    assert type(hub) is type(direct) and hub.cfg == direct.cfg
    assert all(torch.equal(a, b) for a, b in zip(hub.state_dict().values(), direct.state_dict().values()))
    # pretrained= as in create_model: a weights file in torchvision's layout
    path = tmp_path / "weights.pt"
    torch.save(resnetlab.export_state_dict(direct, layout="torchvision"), path)
    with pytest.warns(UserWarning, match="v1.5"):  # create_model's warning: public weights are v1.5
        loaded = torch.hub.load(str(REPO), "resnet50", source="local", num_classes=10, stride_in_1x1=True,
                                pretrained=str(path))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.eval()(x), direct.eval()(x))
