"""torch.hub entry points: `torch.hub.load(REPO, NAME, **kwargs)` is `resnetlab.create_model(NAME, **kwargs)`
for every name of `resnetlab.list_models()`, `pretrained=` included ("torchvision", "timm", a file, a
state dict)."""

import sys as _sys
from pathlib import Path as _Path

# torch.hub imports this file from a checkout of the repository, where the package is not installed:
# the checkout's own code is the one to use.
_sys.path.insert(0, str(_Path(__file__).resolve().parent / "src"))

from resnetlab import create_model as _create_model  # noqa: E402
from resnetlab import list_models as _list_models  # noqa: E402

dependencies = ["torch", "numpy", "safetensors"]


def _entry_point(name: str):
    def entry_point(**kwargs):
        return _create_model(name, **kwargs)

    entry_point.__name__ = entry_point.__qualname__ = name
    entry_point.__doc__ = f"resnetlab.create_model({name!r}, **kwargs): see `help(resnetlab.create_model)`."
    return entry_point


for _name in _list_models():
    globals()[_name] = _entry_point(_name)
