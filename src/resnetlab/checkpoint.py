"""Checkpoints: the one place that knows their format, writes them and reads them back.

A training checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads
with `torch.load(weights_only=True)`:

  model      the weights, in resnetlab layout: those the run evaluates, so the moving average
             of the weights where the run keeps one (--ema-decay)
  training_weights  with an average: the weights the optimizer trains, which a resume continues
  optimizer  the optimizer's state_dict
  state      engine.TrainState (step, best accuracy, the sums since the last evaluation, clocks)
  rng        every random stream (torch CPU and CUDA, numpy, Python)
  config     the run's resolved TrainConfig
  meta       what a user of the network needs: model name and overrides, classes, input shape,
             normalisation, dataset
  step, epoch, versions

Writes are atomic (temporary file, fsync, rename, fsync of the folder): at every moment either
the previous or the new file is complete on disk. Before last.pt is replaced, the complete one
it replaces stays as previous.pt, so a last.pt damaged by a storage fault costs one save
interval, not the run.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from .weights import read_weights_file

LAST, BEST, PREVIOUS = "last.pt", "best.pt", "previous.pt"
TEMPORARY_SUFFIX = ".tmp"
REQUIRED = ("model", "config", "step")


def versions() -> dict:
    from . import __version__

    return {"resnetlab": __version__, "torch": str(torch.__version__), "python": sys.version.split()[0]}


def training_checkpoint(*, model, optimizer, state, config: dict, meta: dict, steps_per_epoch: int,
                        average=None) -> dict:
    """Everything a run needs to continue exactly where it stopped. `average`: the run's
    ema.WeightAverage, whose weights become the checkpoint's `model`."""
    weights = {"model": model.state_dict()} if average is None else \
        {"model": average.state_dict(), "training_weights": model.state_dict()}
    return {
        **weights, "optimizer": optimizer.state_dict(), "state": state.state_dict(),
        "rng": rng_state(), "config": config, "meta": meta, "step": state.step,
        "epoch": state.step // steps_per_epoch, "versions": versions(),
    }


def save_checkpoint(checkpoint: dict, path: str | Path, keep_previous: bool = False) -> None:
    """Write `checkpoint` atomically; keep_previous: the file it replaces stays as previous.pt."""
    path = Path(path)
    if keep_previous and path.is_file():
        _link_previous(path)
    _atomic_write(path, lambda file: torch.save(checkpoint, file))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically, like save_checkpoint."""
    _atomic_write(path, lambda file: file.write(text.encode()))


def _atomic_write(path: str | Path, write) -> None:
    path = Path(path)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    except OSError as error:
        raise _not_written(path, error) from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:  # a full disk, a quota, a vanished folder: say which file, and what is kept
        Path(temporary).unlink(missing_ok=True)
        raise _not_written(path, error) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _link_previous(path: Path) -> None:
    """previous.pt becomes another name of the complete `path`: a hard link, so nothing is copied
    and `path` itself is never missing. Where the file system has no hard links, there is no
    previous.pt (the atomic write still protects last.pt)."""
    link = path.parent / f".{PREVIOUS}.link{TEMPORARY_SUFFIX}"
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, path.parent / PREVIOUS)
    except OSError:
        link.unlink(missing_ok=True)


def _not_written(path: Path, error: OSError) -> OSError:
    kept = f"the previous {path.name} is unchanged" if path.exists() else f"no {path.name} was written"
    return OSError(error.errno, f"could not write {path} ({error.strerror or error}); {kept}")


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files of writes that a crash interrupted (never complete files)."""
    for stale in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    """A resnetlab checkpoint, read safely; a ValueError says what is wrong with a bad one."""
    checkpoint = read_weights_file(path)
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED):
        raise ValueError(f"{path} is not a resnetlab training checkpoint (expected keys {', '.join(REQUIRED)})")
    return checkpoint


def has_resume_point(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in (LAST, PREVIOUS))


def load_resume_point(folder: str | Path) -> tuple[dict, str | None]:
    """The checkpoint a run continues from, and what the run loses: last.pt (nothing lost), or,
    where a storage fault damaged it, previous.pt and a line that names the step the run goes
    back to."""
    folder = Path(folder)
    try:
        return load_checkpoint(folder / LAST), None
    except (ValueError, OSError) as error:
        if not (folder / PREVIOUS).is_file():
            raise
        checkpoint = load_checkpoint(folder / PREVIOUS)
        return checkpoint, (f"{folder / LAST} cannot be read ({error}); resuming from {PREVIOUS} at step "
                            f"{checkpoint['step']}: the steps after it are trained again")


def rng_state() -> dict:
    """Every random stream a run may touch: torch (CPU and CUDA), numpy, Python."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": np_state[0], "state": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["key"], numpy["state"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    random.setstate(_to_tuples(state["python"]))


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def load_model(path: str | Path, device="cpu"):
    """The trained model of a checkpoint (eval mode) and its metadata (classes, normalisation,
    image size, the training config)."""
    from .recipes import CUSTOM
    from .zoo import create_model

    checkpoint = load_checkpoint(path)
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or "model" not in meta:
        raise ValueError(f"{path} has no model metadata (expected a checkpoint written by resnetlab train)")
    if meta["model"].startswith(CUSTOM):
        name = meta["model"].removeprefix(CUSTOM)
        raise ValueError(f"{path} holds the weights of a network given as an nn.Module ({name}): build it and "
                         "load them with model.load_state_dict(resnetlab.checkpoint.load_checkpoint(path)['model'])")
    model = create_model(meta["model"], num_classes=meta["num_classes"], in_chans=meta["in_chans"],
                         pretrained=checkpoint["model"], **meta.get("overrides", {}))
    meta = dict(meta, config=checkpoint["config"], step=checkpoint["step"])
    return model.to(device).eval(), meta
