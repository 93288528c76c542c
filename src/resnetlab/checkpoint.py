"""Checkpoints that survive crashes and resume exactly.

A checkpoint is written to a temporary file in the same folder, flushed to disk (fsync), then
renamed over the old one: at every moment either the previous or the new checkpoint is
complete on disk. Only tensors, numbers, strings, lists and dicts go in, so every checkpoint
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .weights import read_weights_file


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to `path` atomically: temporary file, fsync, rename, fsync of the folder."""
    _atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically, like atomic_save."""
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


TEMPORARY_SUFFIX = ".tmp"


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
    required = ("model", "config", "step")
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required):
        raise ValueError(f"{path} is not a resnetlab training checkpoint (expected keys {', '.join(required)})")
    return checkpoint


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
    from .zoo import create_model

    checkpoint = load_checkpoint(path)
    meta = checkpoint.get("meta")
    if not isinstance(meta, dict) or "model" not in meta:
        raise ValueError(f"{path} has no model metadata (expected a checkpoint written by resnetlab train)")
    model = create_model(meta["model"], num_classes=meta["num_classes"], in_chans=meta["in_chans"],
                         pretrained=checkpoint["model"], **meta.get("overrides", {}))
    meta = dict(meta, config=checkpoint["config"], step=checkpoint["step"])
    return model.to(device).eval(), meta
