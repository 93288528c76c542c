"""The datasets by name: MNIST, Fashion-MNIST and CIFAR in memory; image folders on disk.

Every dataset answers the same two questions, so the trainer and `resnetlab eval` never ask
which kind it is: how to normalise its images (`normalization`), and how to batch them for a
run (`loaders`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .augment import Normalize
from .batches import InMemoryLoader

DATASETS = ("fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder")


@dataclass
class Split:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    """A dataset held in memory as uint8 tensors."""

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

    def normalization(self, per_pixel: bool) -> Normalize:
        """The training set's statistics: per channel, or the paper's per-pixel mean image."""
        return Normalize.fit(self.train.images, per_pixel=per_pixel)

    def loaders(self, cfg, normalize: Normalize, *, device, channels_last: bool, rank: int = 0,
                world_size: int = 1) -> tuple[InMemoryLoader, InMemoryLoader]:
        """(training, test) loaders with the run's batch sizes, augmentation and seed."""
        common = dict(channels_last=channels_last, device=device, rank=rank, world_size=world_size)
        train = InMemoryLoader(self.train, cfg.batch_size, normalize, shuffle=True, drop_last=True,
                               augment=cfg.augment, pad=cfg.pad, seed=cfg.seed, **common)
        test = InMemoryLoader(self.test, cfg.eval_batch_size, normalize, shuffle=False, drop_last=False, **common)
        return train, test

    def calibration_images(self, normalize: Normalize, count: int = 256) -> torch.Tensor:
        """`count` training images spread evenly over the split, unaugmented and normalised: what
        int8 quantization calibrates on."""
        index = torch.linspace(0, len(self.train) - 1, min(count, len(self.train))).long()
        return normalize(self.train.images[index])

    def ten_crop(self):
        raise ValueError("--ten-crop and --multi-scale need an image folder (--data imagefolder --data-dir DIR)")

    multi_scale_samples = ten_crop  # the views of section 3.4 are for image folders only


def tensor_dataset(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                   test_labels: torch.Tensor, classes: list[str] | None = None) -> Dataset:
    """A dataset from images and labels in memory: images uint8 (N, C, H, W) or (N, H, W), or
    floats in [0, 1] (stored as uint8, as 8-bit images are); labels integers 0..classes-1."""
    splits = []
    for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        images, labels = torch.as_tensor(images), torch.as_tensor(labels)
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.ndim != 4:
            raise ValueError(f"{split} images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}")
        if images.is_floating_point():
            if len(images) and not (0 <= images.min() and images.max() <= 1):
                raise ValueError(f"float {split} images must be in [0, 1] (or give uint8 0..255), found "
                                 f"{images.min().item():.3g}..{images.max().item():.3g}")
            images = (images * 255).round().to(torch.uint8)
        elif images.dtype != torch.uint8:
            raise ValueError(f"{split} images must be uint8 (0..255) or floats in [0, 1], got {images.dtype}")
        if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
            raise ValueError(f"{split} labels must be one integer per image ({len(images)}), got "
                             f"{labels.dtype} of shape {tuple(labels.shape)}")
        splits.append(Split(images.contiguous(), labels.long()))
    if splits[0].images.shape[1:] != splits[1].images.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {tuple(splits[0].images.shape[1:])} and "
                         f"{tuple(splits[1].images.shape[1:])}")
    count = int(max(splits[0].labels.max(), splits[1].labels.max())) + 1 if classes is None else len(classes)
    _check_labels("the", splits[0].labels, splits[1].labels, count)
    return Dataset("tensors", *splits, list(classes) if classes is not None else [str(i) for i in range(count)])


def _check_labels(name: str, train_labels: torch.Tensor, test_labels: torch.Tensor, count: int) -> None:
    for labels, split in ((train_labels, "train"), (test_labels, "test")):
        if len(labels) and (labels.min() < 0 or labels.max() >= count):
            raise ValueError(f"{name} {split} labels must be in [0, {count - 1}], found "
                             f"{labels.min().item()}..{labels.max().item()}")


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
    elif name == "tensors":
        raise ValueError("the data of this run was given as tensors in memory: pass them again to "
                         "resnetlab.train(data=(train_images, train_labels, test_images, test_labels))")
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    _check_labels(name, train_y, test_y, len(classes))
    if val_split:
        if not 0 < val_split < len(train_y):
            raise ValueError(f"val_split must be between 1 and {len(train_y) - 1}, got {val_split}")
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))
        held, kept = order[:val_split], order[val_split:]
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[kept], train_y[kept]
    return Dataset(name, Split(train_x.contiguous(), train_y), Split(test_x.contiguous(), test_y), list(classes))
