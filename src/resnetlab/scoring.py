"""Scoring a network: loss, top-1 and top-5 over a loader, summed over processes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import dist
from .device import autocast, to_precision


@dataclass
class EvalResult:
    loss: float
    acc1: float
    acc5: float
    count: int
    confusion: torch.Tensor | None = None  # [true class, predicted class] counts, when asked for

    def as_dict(self, prefix: str = "test_") -> dict:
        return {f"{prefix}loss": self.loss, f"{prefix}acc1": self.acc1, f"{prefix}acc5": self.acc5}

    def per_class(self, classes: list[str]) -> list[dict]:
        """Each class's test images and top-1 accuracy (%), from the confusion matrix."""
        rows = []
        for index, name in enumerate(classes):
            images = int(self.confusion[index].sum())
            correct = int(self.confusion[index, index])
            rows.append({"class": name, "images": images, "acc1": 100.0 * correct / images if images else float("nan")})
        return rows


class Scores:
    """Running loss, top-1 and top-5 counts (and, given num_classes, the confusion matrix) of
    logits against labels, kept on the device and summed over processes at the end."""

    def __init__(self, device: torch.device | str = "cpu", num_classes: int | None = None):
        self.device = torch.device(device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.correct1 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.correct5 = torch.zeros((), dtype=torch.int64, device=self.device)
        self.num_classes = num_classes
        self.confusion = torch.zeros((num_classes or 0,) * 2, dtype=torch.int64, device=self.device)
        self.count = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(labels.view(-1, 1))
        self.correct1 += hits[:, 0].sum()
        self.correct5 += hits.any(dim=1).sum()
        if self.num_classes:
            pairs = labels * self.num_classes + top[:, 0]
            self.confusion += torch.bincount(pairs, minlength=self.num_classes ** 2).view_as(self.confusion)
        self.count += len(labels)

    def result(self) -> EvalResult:
        count = torch.tensor(float(self.count), dtype=torch.float64, device=self.device)
        sums = [self.loss_sum, self.correct1.double(), self.correct5.double(), count]
        totals = dist.all_reduce_sum(torch.stack(sums))
        loss, c1, c5, n = totals.tolist()
        if n == 0:
            raise ValueError("evaluate: the loader gave no images")
        confusion = dist.all_reduce_sum(self.confusion).cpu() if self.num_classes else None
        return EvalResult(loss / n, 100.0 * c1 / n, 100.0 * c5 / n, int(n), confusion)


def shifted_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The batch moved by one pixel up, down, left and right, the border pixels repeated, in the
    batch's memory format."""
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    h, w = images.shape[2:]
    layout = torch.channels_last if images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return [padded[:, :, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w].contiguous(memory_format=layout)
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, precision: str = "fp32", tta_flip: bool = False, tta_shift: bool = False,
             device: torch.device | str = "cpu", num_classes: int | None = None) -> EvalResult:
    """Loss, top-1 and top-5 accuracy (in %) over a loader of (images, labels) batches, and
    with num_classes the confusion matrix. tta_flip averages the logits of each image and its
    mirror image; tta_shift also those of the image moved by one pixel up, down, left and right
    (with tta_flip, 10 views); 5-D batches (N, views, C, H, W) average the logits of the views
    (ten-crop)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    scores = Scores(device, num_classes)
    try:
        for images, labels in loader:
            views = 1
            if images.ndim == 5:  # several views of each image (ten-crop): average their logits
                views = images.shape[1]
                images = images.flatten(0, 1)
            images = to_precision(images, precision)
            with autocast(device, precision):
                shifted = [images, *shifted_views(images)] if tta_shift else [images]
                mirrored = [view.flip(3) for view in shifted] if tta_flip else []
                outputs = [model(view) for view in shifted + mirrored]
                logits = sum(outputs[1:], outputs[0]) / len(outputs)
            if views > 1:
                logits = logits.view(-1, views, logits.shape[-1]).mean(1)
            scores.add(logits, labels)
    finally:
        model.train(was_training)
    return scores.result()
