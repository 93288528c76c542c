"""`resnetlab.train`: the command line's `resnetlab train` from Python, for a network of the zoo
or any nn.Module, on a dataset by name, an image folder, or images held in tensors.

The settings are the train flags as keywords and go through the same validation (recipes); the
run folder, progress, checkpoints and exact resume are the trainer's (engine.fit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .data import DATASETS
from .data.datasets import tensor_dataset
from .recipes import CUSTOM, TENSORS, TrainConfig, make_config, resume_request
from .runfolder import RunFolder, default_out


@dataclass
class TrainResult:
    out: Path | None  # the run folder
    final_acc1: float  # test top-1 at the last evaluation, %
    best_acc1: float
    steps: int
    metrics: list[dict]  # the rows of metrics.jsonl
    model: nn.Module  # the trained network as evaluated (the weight average, if kept), eval mode


def train(*, model: str | nn.Module = "resnet20", data="fashion-mnist", out: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, **settings) -> TrainResult:
    """Train a network as `resnetlab train` does and return the result.

    model: a model name (`resnetlab.list_models()`) or any nn.Module that maps a batch of images
        (N, C, H, W) to class logits (N, classes); it is trained in place.
    data: a dataset name ("fashion-mnist", "cifar10", ...), an image folder with train/ and val/
        (a path, or "imagefolder" with data_dir=), or tensors in memory: (train_images,
        train_labels, test_images, test_labels), or a dict with those four names and optionally
        "classes". Images uint8 (N, C, H, W) or (N, H, W), or floats in [0, 1].
    out: the run folder (default runs/MODEL-DATA-TIME); resume=True continues the run there.
    settings: the train flags as keywords (epochs=3, lr=0.05, recipe="paper-cifar", ...).
    """
    network = None
    if isinstance(model, nn.Module):
        network, model = model, CUSTOM + type(model).__name__
    elif not isinstance(model, str):
        raise TypeError(f"model must be a model name or an nn.Module, got {type(model).__name__}")
    data, dataset, settings = _data(data, settings)
    name = model.removeprefix(CUSTOM)
    out = str(out) if out is not None else default_out(name, data)
    given = {"model": model, "data": data, "out": out, **settings}
    cfg = _resumed(given) if resume else make_config(given.pop("recipe", None), **given)
    from .engine import fit  # the trainer's imports wait for the first run (import resnetlab stays light)

    result = fit(cfg, resume=resume, dataset=dataset, progress=progress, network=network)
    return TrainResult(result.out, result.test_acc1, result.best_acc1, result.steps, result.metrics, result.model)


def _data(data, settings: dict) -> tuple[str, object, dict]:
    """(the config's data name, a dataset already in memory or None, the other settings)."""
    if isinstance(data, (tuple, list, dict)):
        if isinstance(data, dict):
            missing = {"train_images", "train_labels", "test_images", "test_labels"} - set(data)
            if missing:
                raise ValueError(f"data as a dict needs train_images, train_labels, test_images and test_labels; "
                                 f"missing {', '.join(sorted(missing))}")
            return TENSORS, tensor_dataset(**data), settings
        if len(data) != 4:
            raise ValueError("data as tensors: (train_images, train_labels, test_images, test_labels), got "
                             f"{len(data)} items")
        return TENSORS, tensor_dataset(*data), settings
    if isinstance(data, os.PathLike) or (isinstance(data, str) and data not in DATASETS and data != TENSORS
                                         and Path(data).is_dir()):
        return "imagefolder", None, {**settings, "data_dir": str(data)}
    if not isinstance(data, str):
        raise TypeError(f"data must be a dataset name, an image folder or tensors, got {type(data).__name__}")
    return data, None, settings


def _resumed(given: dict) -> TrainConfig:
    """The config to continue the run in given["out"] with: its own settings and the given ones
    that may change (a contradicting one is a ValueError, as on the command line)."""
    return resume_request(RunFolder(given["out"]).saved_config(), given)
