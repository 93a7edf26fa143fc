"""Budget-aware elastic inference: pick the scale that fits a compute budget.

Stage 13 measures every scale on a dev set and writes a scale table
(``scale_table.json``: WER, LLM tokens per second of speech and real-time
factor per scale). Given a budget, the best scale is the one with the lowest
dev WER among those within the budget; ties go to the cheaper scale. A
tighter budget only removes candidates, so it never picks a more expensive
scale.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ScaleCost:
    """One scale's measured accuracy and cost on the dev set."""

    scale: str
    wer: float
    tokens_per_sec: float
    rtf: float


def read_scale_table(path: Path) -> List[ScaleCost]:
    """The rows of a scale table (``espnet_mtsk.reporting.scoring.write_scale_table``)."""
    try:
        table = json.loads(Path(path).read_text())
        return [ScaleCost(**row) for row in table["scales"]]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"scale table {path} not found: run the recipe's stage 13 on a dev "
            "set, or pass --scale_table"
        ) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a scale table ({e})") from e


def most_accurate_within(
    items: Sequence[T],
    wer: Callable[[T], float],
    costs: Callable[[T], Tuple[float, ...]],
    limits: Sequence[Optional[float]],
) -> Optional[T]:
    """The item of lowest ``wer`` among those whose ``costs`` are each within
    their limit (None: no limit), ties to the cheaper; None when none fits.
    A tighter limit only removes candidates, so it never picks a costlier item."""
    fits = [x for x in items if all(limit is None or c <= limit for c, limit in zip(costs(x), limits))]
    return min(fits, key=lambda x: (wer(x), *costs(x)), default=None)


def choose_scale(
    table: Sequence[ScaleCost],
    max_tokens_per_sec: Optional[float] = None,
    max_rtf: Optional[float] = None,
    allowed: Optional[Sequence[str]] = None,
) -> ScaleCost:
    """The lowest-WER scale within the budget (``None``: no limit).

    ``allowed`` restricts the candidates (e.g. to video-only scales when a
    file has no audio). An empty choice is an error that names the cheapest
    scale's cost, so the user sees how far off the budget is.
    """
    rows = [r for r in table if allowed is None or r.scale in allowed]
    if not rows:
        raise ValueError(f"the scale table has none of the scales {list(allowed or [])}")
    best = most_accurate_within(rows, lambda r: r.wer, lambda r: (r.tokens_per_sec, r.rtf), (max_tokens_per_sec, max_rtf))
    if best is None:
        cheapest = min(rows, key=lambda r: (r.tokens_per_sec, r.rtf))
        raise ValueError(
            f"no scale fits the budget (tokens/s <= {max_tokens_per_sec}, "
            f"RTF <= {max_rtf}); the cheapest, {cheapest.scale}, needs "
            f"{cheapest.tokens_per_sec} tokens/s at RTF {cheapest.rtf}"
        )
    logging.info(
        f"Budget (tokens/s <= {max_tokens_per_sec}, RTF <= {max_rtf}) -> scale "
        f"{best.scale}: dev WER {best.wer}%, {best.tokens_per_sec} tokens/s, RTF {best.rtf}"
    )
    return best
