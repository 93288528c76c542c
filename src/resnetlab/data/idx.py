"""MNIST and Fashion-MNIST from their IDX files (.gz or raw), with MD5 checks.

Where the files are looked for, in order: `data_dir` (the four files, or a folder of the
dataset's name inside it), the Debian package's folder (`apt-get install dataset-fashion-mnist`),
then resnetlab's cache, where the official download puts them.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..download import digest, fetch

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SOURCES = {
    "fashion-mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "system_dir": "/usr/share/datasets/fashion-mnist",
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/"],
        "system_dir": "/usr/share/datasets/mnist",
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        "classes": [str(i) for i in range(10)],
    },
}

# IDX magic numbers: 0x0000 0x08 (unsigned byte) then the number of dimensions.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801


def cache_dir() -> Path:
    return Path(os.environ.get("RESNETLAB_CACHE", Path.home() / ".cache" / "resnetlab"))


def read_idx(path: Path, expect_images: bool) -> np.ndarray:
    """Parse one IDX file: unsigned bytes, 3 dims for images (N, 28, 28), 1 for labels."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise ValueError(f"corrupt or truncated IDX file {path}: {error}") from None
    if not raw:
        raise ValueError(f"empty IDX file {path}")
    magic_expected = _IMAGES_MAGIC if expect_images else _LABELS_MAGIC
    kind = "images" if expect_images else "labels"
    if len(raw) < 4 or struct.unpack(">I", raw[:4])[0] != magic_expected:
        raise ValueError(f"{path} is not an IDX {kind} file (expected magic {magic_expected:#010x})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"truncated IDX file {path}: header cut short")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(
            f"truncated or corrupt IDX file {path}: header says {shape} = {expected} bytes, "
            f"found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_files(name: str, data_dir: str | Path | None, download: bool) -> dict[str, Path]:
    """The four IDX files of `name`; downloaded into the cache if nowhere else (and allowed)."""
    source = SOURCES[name]
    # An explicit data_dir is the only place looked at (and downloaded into): falling back to
    # another copy would train on data the user did not name.
    if data_dir is not None:
        candidates = [Path(data_dir), Path(data_dir) / name]
    else:
        candidates = [Path(source["system_dir"]), cache_dir() / name]
    for folder in candidates:
        found = {}
        for stem in FILES:
            for file in (folder / f"{stem}.gz", folder / stem):
                if file.is_file():
                    found[stem] = file
                    break
        if len(found) == len(FILES):
            return found
    if data_dir is not None and not download:
        raise FileNotFoundError(f"{name}: expected {', '.join(f + '.gz' for f in FILES)} in {data_dir}")
    if not download:
        raise FileNotFoundError(f"{name} not found in {', '.join(map(str, candidates))}")
    return _download(name, Path(data_dir) / name if data_dir is not None else cache_dir() / name)


def _download(name: str, folder: Path) -> dict[str, Path]:
    source = SOURCES[name]
    files = {}
    for stem in FILES:
        filename = f"{stem}.gz"
        target = folder / filename
        errors = []
        for mirror in source["mirrors"]:
            if target.is_file() and digest(target, "md5") == source["md5"][filename]:
                break
            try:
                fetch(mirror + filename, target, md5=source["md5"][filename])
            except (OSError, ValueError) as error:
                errors.append(str(error))
        if not target.is_file():
            raise OSError(f"could not download {name} file {filename} ({'; '.join(errors)}); "
                          f"put the four IDX files in a folder and pass --data-dir")
        files[stem] = target
    return files


def load_idx_dataset(name: str, data_dir=None, download: bool = True):
    """(train_images, train_labels, test_images, test_labels, classes) as uint8/int64 tensors,
    images shaped (N, 1, 28, 28)."""
    files = find_files(name, data_dir, download)
    arrays = []
    for stem in FILES:
        images = "images" in stem
        array = read_idx(files[stem], expect_images=images)
        if images and array.ndim != 3:
            raise ValueError(f"{files[stem]}: expected images of shape (N, H, W), got {array.shape}")
        if not images and array.ndim != 1:
            raise ValueError(f"{files[stem]}: expected labels of shape (N,), got {array.shape}")
        arrays.append(array)
    train_x, train_y, test_x, test_y = arrays
    for x, y, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
        if len(x) != len(y):
            raise ValueError(f"{name} {split}: {len(x)} images but {len(y)} labels")
    as_images = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731
    as_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return as_images(train_x), as_labels(train_y), as_images(test_x), as_labels(test_y), SOURCES[name]["classes"]
