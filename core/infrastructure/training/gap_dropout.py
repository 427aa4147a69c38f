"""Dropout on CPU that draws only the dropped positions: the same Bernoulli masks, ~1/p fewer random numbers.

``nn.Dropout`` draws one Bernoulli number per element. On a CPU that random stream is the cost:
a LoRA step on the embedded model draws 210 masks (one per adapted projection) and spent 18-21 %
of its time in ``aten::bernoulli_`` (README, "Where a step's time goes"). The positions a
Bernoulli(p) process drops are separated by independent geometric gaps, so drawing those gaps
(``floor(log U / log(1 - p)) + 1`` for uniform ``U``) gives exactly the same distribution of masks
from about ``p`` random numbers per element instead of one: at the usual ``p = 0.05``, 20 times
fewer. The kept elements are scaled by ``1 / (1 - p)`` as ``nn.Dropout`` does; the dropped
positions (int64) are what the backward pass keeps, less memory than a boolean mask below
``p = 1/8``.

Used for ``nn.Dropout`` modules with ``0 < p <= MAX_PROBABILITY`` (LoRA's ``lora_dropout`` and a
model's own dropout layers) when training on a CPU; on other devices the module runs
``nn.Dropout``'s own kernel. The random numbers come from torch's default generator, so seeding
and exact resume (which restores that generator's state) work as before.
"""

from __future__ import annotations

import math
from typing import Any

import torch

MAX_PROBABILITY = 0.25
"""Above this the gaps are short and drawing them saves little over one number per element."""


def dropped_positions(count: int, probability: float, draws: int | None = None) -> torch.Tensor:
    """Positions a Bernoulli(``probability``) process drops among ``count`` elements, in order.

    Args:
        count: Number of elements.
        probability: Drop probability, in (0, 1).
        draws: Gaps drawn at a time (default: the expected number of drops plus six standard
            deviations, so one draw almost always reaches the end).

    Returns:
        int64 positions in ``[0, count)``.
    """
    expected = count * probability
    draws = draws or int(expected + 6 * math.sqrt(expected * (1 - probability)) + 16)
    log_keep = math.log1p(-probability)

    def gaps() -> torch.Tensor:
        # 1 - U lies in (0, 1]: floor(log(1 - U) / log(1 - p)) + 1 is geometric on {1, 2, ...}
        uniform = torch.rand(draws, dtype=torch.float64)
        return uniform.neg_().log1p_().div_(log_keep).floor_().add_(1)

    ends = gaps().cumsum_(0)
    while ends[-1] <= count:  # the draws fell short of the end (about 1e-9 likely): continue the process
        ends = torch.cat([ends, gaps().cumsum_(0).add_(ends[-1])])
    positions = ends.sub_(1)
    return positions[: int(torch.searchsorted(positions, float(count)))].long()


class _GapDropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(context: Any, inputs: torch.Tensor, probability: float) -> torch.Tensor:
        positions = dropped_positions(inputs.numel(), probability)
        scale = 1.0 / (1.0 - probability)
        output = (inputs * scale).contiguous()
        output.view(-1)[positions] = 0
        context.save_for_backward(positions)
        context.scale = scale
        return output

    @staticmethod
    def backward(context: Any, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        (positions,) = context.saved_tensors
        result = (gradient * context.scale).contiguous()
        result.view(-1)[positions] = 0
        return result, None


class GapDropout(torch.nn.Dropout):
    """``nn.Dropout`` that draws the dropped positions as geometric gaps on a CPU (same masks' law)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Drops each element with probability ``p`` and scales the rest by ``1 / (1 - p)`` in training.

        Args:
            inputs: Any tensor.

        Returns:
            The tensor with dropout applied (unchanged outside training).
        """
        if not self.training or self.p == 0 or inputs.device.type != "cpu" or self.inplace:  # nn.Dropout's kernel
            return super().forward(inputs)
        return _GapDropoutFunction.apply(inputs, self.p)


def use_gap_dropout(model: torch.nn.Module) -> int:
    """Swaps every plain, not in-place ``nn.Dropout`` with ``0 < p <= MAX_PROBABILITY`` for :class:`GapDropout`.

    Args:
        model: The model to train (plain or PEFT-wrapped).

    Returns:
        How many modules were swapped.
    """
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is torch.nn.Dropout and 0 < child.p <= MAX_PROBABILITY and not child.inplace
    ]
    for parent, name, child in swaps:
        setattr(parent, name, GapDropout(child.p))
    return len(swaps)
