"""Compression of an encoder's output along time: average pooling or stacking.

Both share one interface: ``(B, T, D)`` frames with lengths -> ``(B, T', D')``
tokens with lengths, for a rate ``r`` given per call, so that one compressor
serves every rate of the Matryoshka set.
"""

from abc import ABC, abstractmethod
from typing import Tuple

import torch
from typeguard import typechecked

from espnet.nets.pytorch_backend.nets_utils import make_pad_mask


class AbsCompressor(torch.nn.Module, ABC):
    """Reduces the frame rate of ``(B, T, D)`` features by an integer rate."""

    @abstractmethod
    def output_size(self, input_size: int, rate: int) -> int:
        raise NotImplementedError

    @abstractmethod
    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor, rate: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def _groups(xs: torch.Tensor, rate: int, num_groups: int) -> torch.Tensor:
    """(B, T, D) -> (B, G, rate, D), zero-padding time up to G * rate."""
    bsz, time, dim = xs.shape
    pad = num_groups * rate - time
    if pad > 0:
        xs = torch.nn.functional.pad(xs, (0, 0, 0, pad))
    return xs[:, : num_groups * rate].reshape(bsz, num_groups, rate, dim)


class AvgPoolCompressor(AbsCompressor):
    """Average pooling with kernel = stride = rate.

    Input ``(B, T, D)``, lengths ``(B,)``; output ``(B, ceil(T / r), D)`` with
    lengths ``ceil(len / r)``. A last, incomplete group is the mean of the real
    frames it holds (padding never enters a mean), so no speech is dropped.
    """

    @typechecked
    def __init__(self):
        super().__init__()

    def output_size(self, input_size: int, rate: int) -> int:
        return input_size

    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor, rate: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if rate == 1:
            return xs, lengths
        num_groups = -(-xs.size(1) // rate)
        valid = (~make_pad_mask(lengths, maxlen=xs.size(1))).to(xs.dtype).unsqueeze(-1)
        sums = _groups(xs * valid, rate, num_groups).sum(2)
        counts = _groups(valid, rate, num_groups).sum(2).clamp(min=1)
        return sums / counts, torch.div(lengths + rate - 1, rate, rounding_mode="floor")


class StackCompressor(AbsCompressor):
    """Concatenation of ``rate`` consecutive frames (feature dim x rate).

    Input ``(B, T, D)``; output ``(B, max(T // r, 1), D * r)`` with lengths
    ``max(len // r, 1)``: like the research code, an incomplete last group is
    dropped, except that an utterance shorter than one group keeps one
    zero-padded token instead of vanishing.
    """

    @typechecked
    def __init__(self):
        super().__init__()

    def output_size(self, input_size: int, rate: int) -> int:
        return input_size * rate

    def forward(
        self, xs: torch.Tensor, lengths: torch.Tensor, rate: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if rate == 1:
            return xs, lengths
        out_lengths = torch.div(lengths, rate, rounding_mode="floor").clamp(min=1)
        valid = (~make_pad_mask(lengths, maxlen=xs.size(1))).to(xs.dtype).unsqueeze(-1)
        groups = _groups(xs * valid, rate, max(xs.size(1) // rate, 1))
        return groups.flatten(2), out_lengths
