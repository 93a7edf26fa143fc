"""Interface of the language model that reads the audio-visual tokens."""

from abc import ABC, abstractmethod
from typing import List, Sequence, Tuple

import torch

# (modality, embeddings (B, T, llm_dim), lengths (B,)), in prompt order.
PromptPart = Tuple[str, torch.Tensor, torch.Tensor]
# Each scale's parts, in the order of the model's scales.
PerScale = Sequence[Sequence[PromptPart]]
# (mean token loss, token accuracy).
LossAcc = Tuple[torch.Tensor, torch.Tensor]


class AbsLLM(torch.nn.Module, ABC):
    """A causal LM conditioned on projected audio/video token sequences."""

    @abstractmethod
    def hidden_size(self) -> int:
        raise NotImplementedError

    @abstractmethod
    def forward(self, parts: Sequence[PromptPart], ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> LossAcc:
        """Teacher-forced pass: returns (mean token loss, token accuracy)."""
        raise NotImplementedError

    def forward_scales(self, per_scale: PerScale, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> List[LossAcc]:
        """``forward`` for several scales that use the same weights."""
        return [self(parts, ys_pad, ys_lens) for parts in per_scale]

    @abstractmethod
    def generate(
        self, parts: Sequence[PromptPart], beam_size: int, max_new_tokens: int
    ) -> Tuple[List[str], torch.Tensor]:
        """Decodes one transcript per batch element; returns them and their
        scores (B,), the mean log-probability per decoded token."""
        raise NotImplementedError
