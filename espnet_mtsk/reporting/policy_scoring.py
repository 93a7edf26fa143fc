"""RESULTS.md's section on the per-utterance policy (``--scale adaptive``).

For a set whose utterances each carry an acoustic condition
(``utt2condition``, e.g. SynthGRID's ``test_mixed``), decoded at every fixed
scale and with the policy at several budgets: each system's WER per
condition, its LLM tokens per second (every pass) and RTF, the estimator's
own RTF; how often the policy chose each scale, per condition; and where the
fixed scales lie against the line through the policy's points.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.decoding.scale_request import is_adaptive
from espnet_mtsk.reporting.scoring import Score, count_errors, normalise


@dataclass
class PolicyRun:
    """One decoding of the set (a fixed scale or a policy) and its numbers."""

    score: Score
    wer_by_condition: Dict[str, float]
    estimator_rtf: Optional[float] = None
    chosen: Optional[Dict[str, Counter]] = None  # condition -> {decoded scales: utterances}


def read_run(score: Score, ref_file: Path, decode_dir: Path, condition: Dict[str, str]) -> PolicyRun:
    """``score`` (``scoring.score_dir``) with its per-condition WER and, for
    a policy, its estimator time and choices (``scale`` and
    ``estimator_seconds`` beside its transcripts)."""
    refs = {k: normalise(v) for k, v in read_2columns_text(ref_file).items()}
    best = decode_dir / "1best_recog"
    hyps = {k: normalise(v) for k, v in read_2columns_text(best / "text").items()}
    wer = {}
    for c in sorted(set(condition.values())):
        keys = sorted(k for k in refs if condition.get(k) == c)
        wer[c] = count_errors([refs[k] for k in keys], [hyps[k] for k in keys]).rate
    run = PolicyRun(score, wer)
    if is_adaptive(score.scale):
        seconds = read_2columns_text(best / "speech_seconds")
        estimator = read_2columns_text(best / "estimator_seconds")
        run.estimator_rtf = sum(float(estimator[k]) for k in refs) / sum(float(seconds[k]) for k in refs)
        chosen = read_2columns_text(best / "scale")
        run.chosen = {c: Counter(chosen[k] for k in refs if condition.get(k) == c) for c in wer}
    return run


def line_through(points: Sequence[Score], tokens_per_sec: float) -> Optional[float]:
    """The WER of the piecewise-linear line through ``points`` (by cost) at
    ``tokens_per_sec``; None outside their range."""
    xs = [p.tokens_per_sec for p in sorted(points, key=lambda p: p.tokens_per_sec)]
    ys = [p.wer for p in sorted(points, key=lambda p: p.tokens_per_sec)]
    if not xs or not xs[0] <= tokens_per_sec <= xs[-1]:
        return None
    return float(np.interp(tokens_per_sec, xs, ys))


def policy_markdown(dataset: str, runs: Sequence[PolicyRun]) -> str:
    """The section for one set; see the module docstring."""
    conditions = list(runs[0].wer_by_condition)
    fixed = [r for r in runs if not is_adaptive(r.score.scale)]
    policy = sorted((r for r in runs if is_adaptive(r.score.scale)), key=lambda r: r.score.tokens_per_sec)
    lines = [f"## Per-utterance scale on {dataset}", "",
             "|system|tokens/s|RTF|estimator RTF|WER|" + "|".join(conditions) + "|",
             "|---" * (5 + len(conditions)) + "|"]
    for r in sorted(fixed, key=lambda r: r.score.tokens_per_sec) + policy:
        est = f"{r.estimator_rtf:.4f}" if r.estimator_rtf is not None else ""
        lines.append(f"|{r.score.scale}|{r.score.tokens_per_sec:.1f}|{r.score.rtf:.3f}|{est}|"
                     f"{r.score.wer:.2f}|" + "|".join(f"{r.wer_by_condition[c]:.1f}" for c in conditions) + "|")
    lines += ["", "tokens/s: every LLM pass's audio-visual tokens per second of speech (a cascade's "
              "second pass included); RTF: all decoding time, the estimator's included.", ""]
    if policy:
        lines += _choices(policy, conditions) + _against_fixed(policy, fixed)
    return "\n".join(lines)


def _choices(policy: Sequence[PolicyRun], conditions: List[str]) -> List[str]:
    labels = sorted({s for r in policy for counts in r.chosen.values() for s in counts})
    lines = ["### Scales chosen, per condition (utterances; `a>b`: decoded again at b)", "",
             "|policy|condition|" + "|".join(labels) + "|", "|---" * (2 + len(labels)) + "|"]
    for r in policy:
        for c in conditions:
            lines.append(f"|{r.score.scale}|{c}|" + "|".join(str(r.chosen[c].get(s, 0)) for s in labels) + "|")
    return lines + [""]


def _against_fixed(policy: Sequence[PolicyRun], fixed: Sequence[PolicyRun]) -> List[str]:
    """Each fixed scale against the policy's line at the scale's cost."""
    points = [r.score for r in policy]
    lines = ["### Fixed scales against the policy's line", "",
             "|scale|tokens/s|WER|policy's WER at its tokens/s|relative|policy's least tokens/s for its WER|",
             "|---|---|---|---|---|---|"]
    for r in sorted(fixed, key=lambda r: r.score.tokens_per_sec):
        at = line_through(points, r.score.tokens_per_sec)
        reach = [p.tokens_per_sec for p in points if p.wer <= r.score.wer]
        cells = [f"{at:.2f}" if at is not None else "outside",
                 f"{100 * (at - r.score.wer) / r.score.wer:+.0f}%" if at is not None and r.score.wer > 0 else "",
                 f"{min(reach):.1f} ({100 * min(reach) / r.score.tokens_per_sec:.0f}%)" if reach else "not reached"]
        lines.append(f"|{r.score.scale}|{r.score.tokens_per_sec:.1f}|{r.score.wer:.2f}|" + "|".join(cells) + "|")
    below = [r.score.scale for r in fixed
             if (at := line_through(points, r.score.tokens_per_sec)) is not None and r.score.wer < at]
    lines += ["", "Fixed scales below the policy's line within its range: "
              + (", ".join(below) if below else "none") + ".", ""]
    return lines
