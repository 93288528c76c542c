"""Batching: each epoch's order and every augmentation draw are functions of (seed, epoch, step).

A resumed run, or a run on N processes, therefore sees exactly the batches of an uninterrupted
single-process run. `InMemoryLoader` cuts each global batch from a per-epoch permutation of a
uint8 tensor dataset and augments it in one go; `folder.FolderLoader` shares the same order.
"""

from __future__ import annotations

import numpy as np
import torch

from .augment import Normalize, random_crop, random_erasing_mask, random_flip

# stream tags for stream_generator, one random stream per purpose: the epoch's order, the batch's
# augmentation, each image-folder image's transform seed
ORDER, AUGMENT, DECODE = 1, 2, 3


def stream_generator(*words: int) -> torch.Generator:
    """A generator seeded from several integers, well mixed (no collisions between streams)."""
    seed = int(np.random.SeedSequence([w & 0xFFFFFFFF for w in words]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


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
        return torch.randperm(self.size, generator=stream_generator(self.seed, ORDER, epoch))

    def global_batch(self, order: torch.Tensor, step: int) -> torch.Tensor:
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous part of a global batch (images, labels or indices)."""
        size = -(-len(batch) // self.world_size)
        return batch[self.rank * size:(self.rank + 1) * size]


class InMemoryLoader(GlobalBatches):
    """Batches of one split as normalised float tensors.

    augment: "crop-flip" (pad `pad`, random crop, random flip), "crop-flip-erase" (and Random
        Erasing: the erased pixels become the mean, 0 after normalisation), "crop", "flip" or "none".
    rank/world_size: this process's contiguous share of each global batch.
    """

    def __init__(self, split, batch_size: int, normalize: Normalize, *, shuffle: bool,
                 drop_last: bool, augment: str = "none", pad: int = 4, seed: int = 0,
                 channels_last: bool = False, device="cpu", rank: int = 0, world_size: int = 1):
        if augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
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
            keep = None
            if self.augment != "none":  # drawn for the global batch: the same for any world size
                generator = stream_generator(self.seed, AUGMENT, epoch, step)
                if "crop" in self.augment:
                    images = random_crop(images, self.pad, generator)
                if "flip" in self.augment:
                    images = random_flip(images, generator)
                if "erase" in self.augment:
                    keep = self.share(random_erasing_mask(len(images), *images.shape[2:], generator))
            labels = self.split.labels[index]
            yield self._to_model(self.share(images), keep), self.share(labels).to(self.device, non_blocking=True)

    def _to_model(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        images = self.normalize(images.to(self.device, non_blocking=True))
        if keep is not None:
            images = images * keep.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=memory_format)


AUGMENTS = ("crop-flip", "crop-flip-erase", "crop", "flip", "none")  # for in-memory data; image folders use the paper's
