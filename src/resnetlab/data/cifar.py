"""CIFAR-10/100 from the python pickle batches, read without running any pickled code.

The batches are pickles of dicts holding numpy arrays. A restricted unpickler resolves only
the numpy names needed to rebuild arrays; anything else in the file is refused.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from ..download import digest, fetch

LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "labels": b"labels",
        "meta": ("batches.meta", b"label_names"),
        "num_classes": 10,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "labels": b"fine_labels",
        "meta": ("meta", b"fine_label_names"),
        "num_classes": 100,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
    },
}

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 pickles the bytes of an array at protocol 2; turns str into bytes
}


class _Refused(pickle.UnpicklingError):
    pass


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"refused to load {module}.{name}: only numpy arrays are allowed")


def safe_unpickle(path: Path):
    """Unpickle a CIFAR batch: dicts, lists, bytes, numbers and numpy arrays only."""
    try:
        with open(path, "rb") as file:
            return _NumpyOnlyUnpickler(io.BytesIO(file.read()), encoding="bytes").load()
    except _Refused as error:
        raise ValueError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        raise ValueError(f"corrupt or truncated CIFAR batch {path}: {error!r}") from None


def _find_folder(name: str, data_dir: Path | None, download: bool) -> Path:
    layout = LAYOUTS[name]
    if data_dir is None:
        from .idx import cache_dir

        data_dir = cache_dir()
    data_dir = Path(data_dir)
    for folder in (data_dir / layout["folder"], data_dir):
        if all((folder / f).is_file() for f in layout["train"] + layout["test"]):
            return folder
    if not download:
        raise FileNotFoundError(
            f"{name}: expected the python batches ({', '.join(layout['train'] + layout['test'])}) "
            f"in {data_dir} or {data_dir / layout['folder']}"
        )
    archive = data_dir / layout["url"].rsplit("/", 1)[-1]
    if not (archive.is_file() and digest(archive, "md5") == layout["md5"]):
        try:
            fetch(layout["url"], archive, md5=layout["md5"])
        except (OSError, ValueError) as error:
            raise OSError(f"{name}: {error}; put the python batches ({archive.name}, unpacked) in a folder "
                          "and pass --data-dir DIR") from None
    with tarfile.open(archive) as tar:
        tar.extractall(data_dir, filter="data")
    return data_dir / layout["folder"]


def _read_split(folder: Path, files: list[str], label_key: bytes, num_classes: int):
    images, labels = [], []
    for filename in files:
        batch = safe_unpickle(folder / filename)
        if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
            raise ValueError(f"{folder / filename}: expected a dict with b'data' and {label_key!r}")
        data = np.asarray(batch[b"data"])
        batch_labels = np.asarray(batch[label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{folder / filename}: expected uint8 data of shape (N, 3072), "
                             f"got {data.dtype} {data.shape}")
        if len(data) != len(batch_labels):
            raise ValueError(f"{folder / filename}: {len(data)} images but {len(batch_labels)} labels")
        if len(batch_labels) and (batch_labels.min() < 0 or batch_labels.max() >= num_classes):
            raise ValueError(
                f"{folder / filename}: labels must be in [0, {num_classes - 1}], found "
                f"{batch_labels.min()}..{batch_labels.max()}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar(name: str, data_dir=None, download: bool = False):
    """(train_images, train_labels, test_images, test_labels, classes); images (N, 3, 32, 32) uint8."""
    layout = LAYOUTS[name]
    folder = _find_folder(name, data_dir, download)
    train = _read_split(folder, layout["train"], layout["labels"], layout["num_classes"])
    test = _read_split(folder, layout["test"], layout["labels"], layout["num_classes"])
    meta_file, meta_key = layout["meta"]
    classes = [str(i) for i in range(layout["num_classes"])]
    if (folder / meta_file).is_file():
        meta = safe_unpickle(folder / meta_file)
        if isinstance(meta, dict) and len(meta.get(meta_key, [])) == layout["num_classes"]:
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[meta_key]]
    return (*train, *test, classes)
