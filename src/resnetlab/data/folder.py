"""Image folders (`train/` and `val/`, one subfolder per class), read through torchvision.

Every image is converted to RGB whatever its mode (grey, palette, RGBA, CMYK, 16-bit); a file
that cannot be decoded is reported by name. Training uses the paper's augmentation (section
3.4): shorter side resized to a random size in [256, 480] (scaled with the crop size), a random
crop and flip, and PCA colour lighting (applied per batch). Testing: the centre crop of the
image resized to 256, ten crops (4 corners, centre and their mirrors), or fully convolutional
multi-scale testing.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from .augment import Normalize
from .batches import AUGMENT, DECODE, GlobalBatches, stream_generator

MULTI_SCALES = (224, 256, 384, 480, 640)


def load_rgb(path: str):
    """The image at `path` as a PIL RGB image; a ValueError names a file that cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info):
                # Transparent pixels over white, as a viewer shows them.
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                return Image.alpha_composite(background, image).convert("RGB")
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                image = image.point(lambda value: value / 256).convert("L")
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


class RandomShorterSide:
    """Resize so that the shorter side is a random integer in [low, high] (scale augmentation)."""

    def __init__(self, low: int, high: int):
        self.low, self.high = low, high

    def __call__(self, image):
        from torchvision.transforms.functional import resize

        return resize(image, random.randint(self.low, self.high))


def transforms(crop: int, train: bool, ten_crop: bool = False):
    """The transforms of one image: uint8 CHW tensors (ten-crop: a (10, C, H, W) stack)."""
    from torchvision import transforms as T

    resize = round(crop * 256 / 224)
    if train:
        steps = [RandomShorterSide(resize, round(crop * 480 / 224)), T.RandomCrop(crop), T.RandomHorizontalFlip()]
        return T.Compose([*steps, T.PILToTensor()])
    if ten_crop:
        return T.Compose([T.Resize(resize), T.TenCrop(crop),
                          T.Lambda(lambda crops: torch.stack([T.functional.pil_to_tensor(c) for c in crops]))])
    return T.Compose([T.Resize(resize), T.CenterCrop(crop), T.PILToTensor()])


def image_folder(root: str | Path, split: str, crop: int, train: bool, ten_crop: bool = False):
    """torchvision's ImageFolder over root/split with resnetlab's loader and transforms."""
    from torchvision.datasets import ImageFolder

    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"expected an image folder {folder} with one subfolder per class")
    try:
        return ImageFolder(str(folder), transform=transforms(crop, train, ten_crop), loader=load_rgb)
    except FileNotFoundError as error:
        raise ValueError(f"{folder}: {error}") from None


def multi_scale_views(path: str, scales=MULTI_SCALES) -> list[torch.Tensor]:
    """One image at each shorter-side scale, whole (fully convolutional testing, section 3.4)."""
    from torchvision.transforms.functional import pil_to_tensor, resize

    image = load_rgb(path)
    return [pil_to_tensor(resize(image, scale)) for scale in scales]


def _unwrapped(loader):
    """Iterate a DataLoader, re-raising a worker's ValueError/OSError with its own one-line
    message (DataLoader wraps it in the worker's whole traceback)."""
    iterator = iter(loader)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except (ValueError, OSError) as error:
            prefix = f"{type(error).__name__}: "
            lines = [line for line in str(error).splitlines() if line.startswith(prefix)]
            if not lines:
                raise
            raise type(error)(lines[-1][len(prefix):]) from None


class FolderDataset:
    """An image-folder dataset: root/train and root/val, crops of `crop` pixels."""

    name = "imagefolder"

    def __init__(self, root: str | Path, crop: int = 224):
        self.root, self.crop = Path(root), crop
        self.train = image_folder(root, "train", crop, train=True)
        self.test = image_folder(root, "val", crop, train=False)
        if self.train.classes != self.test.classes:
            raise ValueError(f"{root}: train/ and val/ must have the same class folders, got "
                             f"{self.train.classes} and {self.test.classes}")
        self.classes = self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)

    def normalization(self, per_pixel: bool) -> Normalize:
        """ImageNet's per-channel statistics, as every pretrained network expects."""
        del per_pixel  # a mean image needs every image at one size: image folders are per channel
        return Normalize.imagenet()

    def loaders(self, cfg, normalize: Normalize, *, device, channels_last: bool, rank: int = 0,
                world_size: int = 1) -> tuple["FolderLoader", "FolderLoader"]:
        """(training, test) loaders: the paper's augmentation with PCA lighting for training."""
        common = dict(channels_last=channels_last, device=device, rank=rank, world_size=world_size)
        train = FolderLoader(self.train, cfg.batch_size, normalize, shuffle=True, drop_last=True, lighting=True,
                             seed=cfg.seed, **common)
        test = FolderLoader(self.test, cfg.eval_batch_size, normalize, shuffle=False, drop_last=False,
                            lighting=False, **common)
        return train, test

    def calibration_images(self, normalize: Normalize, count: int = 256) -> torch.Tensor:
        """`count` training images spread evenly over train/, as the test images are cropped
        (no augmentation), normalised: what int8 quantization calibrates on."""
        plain = image_folder(self.root, "train", self.crop, train=False)
        index = torch.linspace(0, len(plain) - 1, min(count, len(plain))).long().tolist()
        return normalize.standardize(torch.stack([plain[i][0] for i in index]).float() / 255)

    def ten_crop(self) -> "FolderDataset":
        """This dataset with each test image as its ten crops (4 corners, centre, mirrored)."""
        copy = object.__new__(FolderDataset)
        copy.__dict__.update(self.__dict__)
        copy.test = image_folder(self.root, "val", self.crop, train=False, ten_crop=True)
        return copy

    def multi_scale_samples(self) -> list[tuple[str, int]]:
        """(path, label) of every test image, for fully convolutional multi-scale testing."""
        return self.test.samples


class _Seeded:
    """A dataset read with (index, seed) pairs: the image's random transforms (Python's random
    and torch's) start from its own seed, not from the worker's stream."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        state = random.getstate()
        with torch.random.fork_rng(devices=[]):  # the caller's streams are left as they were
            random.seed(seed)
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(state)


class FolderLoader(GlobalBatches):
    """Batches of an ImageFolder, decoded by DataLoader workers; the same global-batch and
    per-rank-share semantics as InMemoryLoader, PCA lighting applied per batch."""

    def __init__(self, dataset, batch_size: int, normalize, *, shuffle: bool, drop_last: bool, lighting: bool,
                 seed: int = 0, channels_last: bool = False, device="cpu", rank: int = 0, world_size: int = 1,
                 num_workers: int = 2):
        super().__init__(len(dataset), batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         rank=rank, world_size=world_size)
        self.dataset, self.normalize, self.lighting = dataset, normalize, lighting
        self.channels_last, self.device, self.num_workers = channels_last, torch.device(device), num_workers

    def batches(self, epoch: int, start: int = 0):
        """Yield (images, labels) for steps start.. of `epoch`, this rank's share. Every random
        draw (each image's crop, scale and flip, each batch's lighting) is a function of (seed,
        epoch, step, position in the global batch): a resumed run, or a run on N processes, sees
        the batches of an uninterrupted single-process run, whatever worker decodes an image."""
        from torch.utils.data import DataLoader

        from .augment import lighting_alpha, pca_lighting

        order = self.order(epoch)
        samples = []  # each step's share: (index, that image's seed) pairs
        for step in range(start, len(self)):
            batch = self.global_batch(order, step)
            seeds = torch.randint(0, 2**62, (len(batch),), generator=stream_generator(self.seed, DECODE, epoch, step))
            samples.append(list(zip(self.share(batch).tolist(), self.share(seeds).tolist())))
        loader = DataLoader(_Seeded(self.dataset), batch_sampler=samples, num_workers=self.num_workers,
                            persistent_workers=False)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        for step, (images, labels) in enumerate(_unwrapped(loader), start):
            images = images.to(self.device).float() / 255
            if self.lighting:  # drawn for the global batch, as the other augmentations
                alpha = lighting_alpha(len(self.global_batch(order, step)), stream_generator(self.seed, AUGMENT, epoch,
                                                                                             step))
                images = pca_lighting(images, self.share(alpha))
            images = self.normalize.standardize(images)
            if images.ndim == 4:  # (ten-crop batches are 5-D: evaluate averages over the views)
                images = images.contiguous(memory_format=memory_format)
            yield images, labels.to(self.device)
