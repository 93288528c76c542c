"""Datasets and batched loading.

Small datasets (MNIST, Fashion-MNIST, CIFAR) live in memory as uint8 tensors; `InMemoryLoader`
cuts each global batch from a per-epoch permutation and augments it in one go. The data order
and every augmentation draw are functions of (seed, epoch, step), so a resumed run, or a run on
N processes, sees exactly the batches of an uninterrupted single-process run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .augment import Normalize, random_crop, random_flip

DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def load_dataset(name: str, data_dir=None, *, download: bool = True, val_split: int = 0, seed: int = 0,
                 image_size: int = 224):
    """A dataset by name. val_split > 0 holds out that many training images as the test split
    (the paper's 45k/5k split for choosing a schedule), chosen by `seed`. "imagefolder" reads
    data_dir/train and data_dir/val with crops of image_size."""
    if name == "imagefolder":
        if data_dir is None:
            raise ValueError("--data imagefolder needs --data-dir, a folder with train/ and val/ inside")
        from .folder import FolderDataset

        return FolderDataset(data_dir, crop=image_size)
    if name in ("fashion-mnist", "mnist"):
        from .idx import load_idx_dataset

        train_x, train_y, test_x, test_y, classes = load_idx_dataset(name, data_dir, download)
    elif name in ("cifar10", "cifar100"):
        from .cifar import load_cifar

        train_x, train_y, test_x, test_y, classes = load_cifar(name, data_dir, download)
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    for labels, split in ((train_y, "train"), (test_y, "test")):
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(f"{name} {split} labels must be in [0, {len(classes) - 1}], found "
                             f"{labels.min().item()}..{labels.max().item()}")
    if val_split:
        if not 0 < val_split < len(train_y):
            raise ValueError(f"val_split must be between 1 and {len(train_y) - 1}, got {val_split}")
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
        held, kept = order[:val_split], order[val_split:]
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[kept], train_y[kept]
    return Dataset(name, Split(train_x.contiguous(), train_y), Split(test_x.contiguous(), test_y), list(classes))


def _generator(*words: int) -> torch.Generator:
    """A generator seeded from several integers, well mixed (no collisions between streams)."""
    seed = int(np.random.SeedSequence([w & 0xFFFFFFFF for w in words]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


_ORDER, _AUGMENT = 1, 2  # stream tags


class GlobalBatches:
    """What every loader shares: each epoch's order of the whole dataset (a function of seed and
    epoch), cut into global batches, of which this process takes its contiguous share."""

    def __init__(self, size: int, batch_size: int, *, shuffle: bool, drop_last: bool, seed: int,
                 rank: int, world_size: int):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if drop_last and batch_size > size:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({size} images)")
        self.size, self.batch_size, self.shuffle, self.drop_last, self.seed = size, batch_size, shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=_generator(self.seed, _ORDER, epoch))

    def global_batch(self, order: torch.Tensor, step: int) -> torch.Tensor:
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of a global batch (images, labels or indices)."""
        size = -(-len(batch) // self.world_size)
        return batch[self.rank * size:(self.rank + 1) * size]


class InMemoryLoader(GlobalBatches):
    """Batches of one split as normalised float tensors.

    augment: "crop-flip" (pad `pad`, random crop, random flip), "crop", "flip" or "none".
    rank/world_size: this process's contiguous share of each global batch.
    """

    def __init__(self, split: Split, batch_size: int, normalize: Normalize, *, shuffle: bool,
                 drop_last: bool, augment: str = "none", pad: int = 4, seed: int = 0,
                 channels_last: bool = False, device="cpu", rank: int = 0, world_size: int = 1):
        if augment not in ("crop-flip", "crop", "flip", "none"):
            raise ValueError(f"augment must be crop-flip, crop, flip or none, got {augment!r}")
        super().__init__(len(split), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         rank=rank, world_size=world_size)
        if batch_size % world_size:
            raise ValueError(f"global batch {batch_size} must divide evenly over {world_size} processes")
        self.split, self.normalize, self.augment, self.pad = split, normalize, augment, pad
        self.channels_last, self.device = channels_last, torch.device(device)

    def batches(self, epoch: int, start: int = 0):
        """Yield (images, labels) for steps start.. of `epoch`, this rank's share."""
        order = self.order(epoch)
        for step in range(start, len(self)):
            index = self.global_batch(order, step)
            images = self.split.images[index]
            if self.augment != "none":  # drawn for the global batch: the same for any world size
                generator = _generator(self.seed, _AUGMENT, epoch, step)
                if "crop" in self.augment:
                    images = random_crop(images, self.pad, generator)
                if "flip" in self.augment:
                    images = random_flip(images, generator)
            labels = self.split.labels[index]
            yield self._to_model(self.share(images)), self.share(labels).to(self.device, non_blocking=True)

    def _to_model(self, images: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        images = images.to(self.device, non_blocking=True)
        return self.normalize(images).contiguous(memory_format=memory_format)
