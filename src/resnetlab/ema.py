"""An exponential moving average (EMA) of a network's weights, the network a run evaluates and saves.

Averaging the weights of the last few hundred steps smooths out the noise of SGD at a high
learning rate, where a single step's weights can score far below their neighbours (the test
accuracy of a fast schedule dips by several points mid-run). The BatchNorm running statistics
are averaged with the same decay as the weights: they are themselves a moving average of the
batch statistics of the moving network, so averaging them again keeps them matched to the
averaged weights (as timm's ModelEmaV2 does).

The decay warms up as min(decay, (1 + t) / (10 + t)) at step t, so the average forgets the
random initial weights within the first few hundred steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The EMA of `network`'s parameters and floating-point buffers; integer buffers (BN's
    batch counters) are copied. `network` is the trained module itself (not a DDP or compiled
    wrapper); `average` is an eval-mode copy of it."""

    def __init__(self, network: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.average = copy.deepcopy(network).eval().requires_grad_(False)
        # the tensors of both, paired by name, fixed for the run: averaged (floating point) or copied
        self._averages, self._currents, self._counters = _tensor_pairs(self.average, network)

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the network's weights after its optimizer step number `step` (from 1)."""
        if self._averages:
            torch._foreach_lerp_(self._averages, self._currents, 1.0 - self.decay_at(step))
        for average, current in self._counters:
            average.copy_(current)

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)


def _tensor_pairs(average: nn.Module, network: nn.Module):
    """The parameters and buffers of both, by name: the floating-point ones as two aligned lists
    (averaged), the rest as (average, current) pairs (copied)."""
    theirs = network.state_dict(keep_vars=True)
    averages, currents, counters = [], [], []
    for name, tensor in average.state_dict(keep_vars=True).items():
        if tensor.is_floating_point():
            averages.append(tensor.data)
            currents.append(theirs[name].data)
        else:
            counters.append((tensor.data, theirs[name].data))
    return averages, currents, counters
