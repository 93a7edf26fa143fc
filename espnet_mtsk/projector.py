"""Projectors from compressed encoder tokens to the LLM's embedding space."""

from typing import Mapping

import torch
from typeguard import typechecked


class MLPProjector(torch.nn.Module):
    """Linear(in, hidden) -> ReLU -> Linear(hidden, out) -> LayerNorm(out).

    ``(B, T, input_size)`` -> ``(B, T, output_size)``.
    """

    @typechecked
    def __init__(self, input_size: int, output_size: int, hidden_size: int = 2048):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden_size),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_size, output_size),
            torch.nn.LayerNorm(output_size),
        )

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return self.net(xs)


class ProjectorBank(torch.nn.ModuleDict):
    """One projector per (modality, rate), keyed like ``a4`` / ``v2``.

    ``input_sizes`` maps each key to its compressed feature size (which for
    stacking depends on the rate).
    """

    @typechecked
    def __init__(
        self, input_sizes: Mapping[str, int], output_size: int, hidden_size: int = 2048
    ):
        super().__init__(
            {
                key: MLPProjector(size, output_size, hidden_size)
                for key, size in input_sizes.items()
            }
        )
