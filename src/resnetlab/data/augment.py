"""Batched augmentation with tensor ops: one call per batch, a random draw per sample."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and take a random crop of the original size from each image, each at
    its own offset (section 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly
    sampled"). Works on uint8; the result is laid out channels_last."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # N, H+2p, W+2p, C
    dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    rows = (dy + torch.arange(h)).unsqueeze(2)  # N, H, 1
    cols = (dx + torch.arange(w)).unsqueeze(1)  # N, 1, W
    crops = padded[torch.arange(n).view(n, 1, 1), rows, cols]  # N, H, W, C
    return crops.permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch horizontally."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def scale_down(images: torch.Tensor, height: int) -> torch.Tensor:
    """Normalised images scaled to `height` rows, the width in proportion (progressive resizing):
    antialiased bilinear, so the smaller image is the larger one seen from further away, as
    decoding at a lower resolution gives it. Keeps the memory format."""
    _, _, h, w = images.shape
    size = (height, max(1, round(w * height / h)))
    if size == (h, w):
        return images
    scaled = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    return scaled.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def random_erasing_mask(n: int, h: int, w: int, generator: torch.Generator, probability: float = 0.5,
                        area: tuple[float, float] = (0.02, 0.4), aspect: tuple[float, float] = (0.3, 3.3)
                        ) -> torch.Tensor:
    """Random Erasing (Zhong et al. 2017) as a mask (N, 1, H, W), True where a pixel is kept: with
    `probability`, each image loses one rectangle of a random share `area` of its pixels and a
    log-uniform `aspect` ratio (height / width), clipped to the image, at a uniform position."""
    erase = torch.rand(n, generator=generator) < probability
    share = torch.empty(n).uniform_(*area, generator=generator)
    ratio = torch.empty(n).uniform_(*torch.tensor(aspect).log().tolist(), generator=generator).exp()
    heights = (share * h * w * ratio).sqrt().round().clamp(1, h).long()
    widths = (share * h * w / ratio).sqrt().round().clamp(1, w).long()
    top = (torch.rand(n, generator=generator) * (h - heights + 1)).long()
    left = (torch.rand(n, generator=generator) * (w - widths + 1)).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + heights).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + widths).view(n, 1, 1)))
    return ~(inside & erase.view(n, 1, 1)).unsqueeze(1)


# AlexNet's PCA colour augmentation (Krizhevsky et al. 2012), used by the paper (section 3.4):
# the eigenvalues and eigenvectors of ImageNet's RGB covariance, for pixels scaled to [0, 1].
IMAGENET_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
IMAGENET_EIGVEC = torch.tensor([
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
])


def pca_lighting(images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Add to every pixel of each float RGB image (in [0, 1]) its own random combination of the
    principal components: `alpha` (N, 3), drawn as N(0, 0.1) by `lighting_alpha`, scaled by the
    eigenvalues."""
    shift = (alpha * IMAGENET_EIGVAL) @ IMAGENET_EIGVEC.T  # N, 3
    return images + shift.to(images.device, images.dtype).view(-1, 3, 1, 1)


def lighting_alpha(count: int, generator: torch.Generator, std: float = 0.1) -> torch.Tensor:
    return torch.randn(count, 3, generator=generator) * std


# ImageNet's per-channel statistics (pixels in [0, 1]), which every public ResNet was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize:
    """x -> (x / 255 - mean) / std, with a per-channel mean (C, 1, 1) or the paper's per-pixel
    mean image (C, H, W)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean = mean.float()
        self.std = std.float()

    @classmethod
    def imagenet(cls) -> "Normalize":
        return cls(torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1))

    def for_images(self, channels: int) -> "Normalize":
        """These statistics for images of `channels` channels of any size (fine-tuning on other
        data): a mean image becomes its per-channel mean; grey statistics are repeated for RGB,
        RGB ones averaged for grey (a grey image is about the mean of its RGB version)."""
        mean, std = self.mean.mean((1, 2), keepdim=True), self.std
        if mean.shape[0] != channels:
            if mean.shape[0] == 1:
                mean, std = mean.repeat(channels, 1, 1), std.repeat(channels, 1, 1)
            elif channels == 1:
                mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
            else:
                raise ValueError(f"statistics of {mean.shape[0]} channels do not fit {channels}-channel images")
        return Normalize(mean, std)

    @classmethod
    def fit(cls, images: torch.Tensor, per_pixel: bool) -> "Normalize":
        """Statistics of a uint8 training set (N, C, H, W), computed in float64 chunks."""
        total = torch.zeros(images.shape[1:], dtype=torch.float64)
        square = torch.zeros(images.shape[1], dtype=torch.float64)
        for chunk in images.split(4096):
            chunk = chunk.double() / 255
            total += chunk.sum(0)
            square += chunk.square().sum((0, 2, 3))
        n = images.shape[0]
        pixels = n * images.shape[2] * images.shape[3]
        channel_mean = total.sum((1, 2)) / pixels
        std = (square / pixels - channel_mean.square()).clamp_min(1e-12).sqrt().view(-1, 1, 1)
        mean = total / n if per_pixel else channel_mean.view(-1, 1, 1)
        # The paper subtracts the mean only; dividing by one global std keeps inputs near unit scale.
        return cls(mean, std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised floats."""
        return self.standardize(images.float() / 255)

    def standardize(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> normalised floats."""
        return (images - self.mean.to(images.device)) / self.std.to(images.device)

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalize":
        return cls(state["mean"], state["std"])
