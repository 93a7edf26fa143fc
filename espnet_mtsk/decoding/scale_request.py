"""What ``--scale`` asks for, parsed once: one scale (its id, or none: the
model's first scale usable with the input), ``auto`` (the one scale a budget
allows, from the model's scale table, ``budget``) or ``adaptive`` (a scale
per utterance, chosen by the fitted policy within a budget of tokens/s,
``adaptive@<tokens/s>``; ``policy``). Its text (``str``), which names a
decoding's output folder, parses back to it.
"""

from dataclasses import dataclass
from typing import Optional

FIXED, AUTO, ADAPTIVE = "fixed", "auto", "adaptive"


@dataclass(frozen=True)
class ScaleRequest:
    """``kind``: FIXED, AUTO or ADAPTIVE; ``scale_id``: FIXED's scale (None:
    the first usable one); ``budget``: ADAPTIVE's tokens/s (None: the
    policy's most accurate point)."""

    kind: str
    scale_id: Optional[str] = None
    budget: Optional[float] = None

    @staticmethod
    def parse(text: Optional[str]) -> "ScaleRequest":
        """None, a scale id, "auto", "adaptive" or "adaptive@<tokens/s>"."""
        if text is None:
            return ScaleRequest(FIXED)
        if text == AUTO:
            return ScaleRequest(AUTO)
        if text != ADAPTIVE and not text.startswith(ADAPTIVE + "@"):
            return ScaleRequest(FIXED, text)
        _, _, budget = text.partition("@")
        try:
            return ScaleRequest(ADAPTIVE, budget=float(budget) if budget else None)
        except ValueError:
            raise ValueError(f"'{text}': the budget after '@' must be tokens/s, e.g. {ADAPTIVE}@12") from None

    @staticmethod
    def policy(budget: Optional[float]) -> "ScaleRequest":
        """The adaptive policy within ``budget`` tokens/s (None: no budget)."""
        return ScaleRequest(ADAPTIVE, budget=budget)

    @property
    def adaptive(self) -> bool:
        return self.kind == ADAPTIVE

    def __str__(self) -> str:
        if self.kind == ADAPTIVE:
            return ADAPTIVE if self.budget is None else f"{ADAPTIVE}@{self.budget:g}"
        return AUTO if self.kind == AUTO else str(self.scale_id)


def is_adaptive(text: Optional[str]) -> bool:
    """Whether a scale's text (a decoding folder's name) is the policy's."""
    return ScaleRequest.parse(text).adaptive
