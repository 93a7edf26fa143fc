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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_mtsk.scoring import Score


@dataclass(frozen=True)
class ScaleCost:
    """One scale's measured accuracy and cost on the dev set."""

    scale: str
    wer: float
    tokens_per_sec: float
    rtf: float


def write_scale_table(scores: Sequence[Score], path: Path, dataset: str) -> None:
    """Writes the scale table from the scores of ``dataset``."""
    rows = [
        ScaleCost(s.scale, round(s.wer, 2), round(s.tokens_per_sec, 2), round(s.rtf, 4))
        for s in scores
        if s.dataset == dataset
    ]
    if not rows:
        raise ValueError(f"no scores for '{dataset}' to build a scale table from")
    table = {"dataset": dataset, "scales": [asdict(r) for r in rows]}
    Path(path).write_text(json.dumps(table, indent=2) + "\n")


def read_scale_table(path: Path) -> List[ScaleCost]:
    """The rows of a scale table written by ``write_scale_table``."""
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
    fits = [
        r
        for r in rows
        if (max_tokens_per_sec is None or r.tokens_per_sec <= max_tokens_per_sec)
        and (max_rtf is None or r.rtf <= max_rtf)
    ]
    if not fits:
        cheapest = min(rows, key=lambda r: (r.tokens_per_sec, r.rtf))
        raise ValueError(
            f"no scale fits the budget (tokens/s <= {max_tokens_per_sec}, "
            f"RTF <= {max_rtf}); the cheapest, {cheapest.scale}, needs "
            f"{cheapest.tokens_per_sec} tokens/s at RTF {cheapest.rtf}"
        )
    best = min(fits, key=lambda r: (r.wer, r.tokens_per_sec, r.rtf))
    logging.info(
        f"Budget (tokens/s <= {max_tokens_per_sec}, RTF <= {max_rtf}) -> scale "
        f"{best.scale}: dev WER {best.wer}%, {best.tokens_per_sec} tokens/s, RTF {best.rtf}"
    )
    return best
