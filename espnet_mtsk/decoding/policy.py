"""The scale chosen per utterance from the input (``--scale adaptive``).

Evidence: how reliable the audio is, read from the audio encoder's states
(which every audio scale computes anyway). Their mean and standard deviation
over time go through one affine map and a softmax: a posterior over the
acoustic conditions of the fitting set (clean and babble SNRs). With the
fitting set's WER per condition and scale, the posterior gives each scale's
expected WER for this utterance; the policy takes the scale that minimises

    expected WER + tradeoff * tokens per second of the scale,

so a larger ``tradeoff`` buys fewer LLM tokens. Optionally a cascade: an
audio-only first choice whose transcript scores (mean log-probability per
token) below ``threshold`` is decoded again at the best audio-visual scale,
and both passes are charged. Each fitted ``OperatingPoint`` (tradeoff,
threshold) records what it cost and gave on the fitting set; a budget in
tokens/s picks the most accurate point within it.

``bin/fit_policy.py`` fits the policy on a noisy dev set decoded at every
scale and writes ``policy.json`` beside the model (packed with it).
"""

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.special import softmax

from espnet_mtsk.decoding.budget import most_accurate_within
from espnet_mtsk.scales import reads_only

POLICY_FILE = "policy.json"
# Written by decoding into its output folder (``AVSR2Text.decoding_settings``);
# fitting copies it into the policy.
DECODING_FILE = "decoding.json"


def pooled_states(hs: torch.Tensor, hlens: torch.Tensor) -> np.ndarray:
    """Encoder states (B, T, D) with lengths (B,) -> (B, 2 D): the mean and
    standard deviation over each utterance's own frames."""
    mask = (torch.arange(hs.size(1), device=hs.device)[None, :] < hlens[:, None]).unsqueeze(-1)
    hs = hs.float() * mask
    n = hlens.clamp(min=1).float()[:, None]
    mean = hs.sum(1) / n
    var = (hs**2).sum(1) / n - mean**2
    return torch.cat([mean, var.clamp(min=0).sqrt()], dim=1).cpu().double().numpy()


@dataclass(frozen=True)
class OperatingPoint:
    """One setting of the policy and what it gave on the fitting set."""

    tradeoff: float  # WER points per token/s
    threshold: Optional[float]  # cascade on the first pass' score; None: no cascade
    tokens_per_sec: float  # every pass's LLM tokens over the speech duration
    wer: float


@dataclass
class Choice:
    """What the policy decodes one utterance at: ``first``, then ``second``
    when the first transcript's score is below ``threshold``."""

    first: str
    second: Optional[str] = None
    threshold: Optional[float] = None

    def needs_second(self, score: float) -> bool:
        return self.second is not None and score < self.threshold


@dataclass
class AdaptivePolicy:
    """The fitted policy; see the module docstring.

    ``weights`` (C, F) and ``bias`` (C,) map pooled audio states (F = 2 x the
    audio encoder's width) to condition logits; ``wer`` (C, S) is the fitting
    set's WER (%) per condition and scale, ``tokens_per_sec`` (S,) each
    scale's cost there; ``modalities`` (S,) what each scale reads.
    """

    conditions: List[str]
    scales: List[str]
    modalities: List[List[str]]
    weights: np.ndarray
    bias: np.ndarray
    wer: np.ndarray
    tokens_per_sec: np.ndarray
    points: List[OperatingPoint]
    fit_set: str = ""
    # The decoding settings of the fitting set's decodings (beam size, new
    # tokens, precision): the WER table and the cascade's score thresholds
    # hold for those.
    decoding: Dict[str, Any] = field(default_factory=dict)

    def posterior(self, features: Optional[np.ndarray], batch: int = 1) -> np.ndarray:
        """(B, F) pooled audio states -> (B, C) condition probabilities;
        None (no sound) -> the uniform prior for ``batch`` utterances."""
        if features is None:
            return np.full((batch, len(self.conditions)), 1.0 / len(self.conditions))
        if features.shape[1] != self.weights.shape[1]:
            raise ValueError(
                f"the policy reads {self.weights.shape[1]} pooled audio features, got "
                f"{features.shape[1]}: it was fitted for another audio encoder"
            )
        return softmax(features @ self.weights.T + self.bias, axis=1)

    def point(self, budget: Optional[float] = None) -> OperatingPoint:
        """The most accurate fitted point within ``budget`` tokens/s
        (None: the most accurate of all); ties go to the cheaper."""
        best = most_accurate_within(self.points, lambda p: p.wer, lambda p: (p.tokens_per_sec,), (budget,))
        if best is None:
            cheapest = min(self.points, key=lambda p: p.tokens_per_sec)
            raise ValueError(
                f"no operating point of the adaptive policy fits {budget} tokens/s; the "
                f"cheapest needs {cheapest.tokens_per_sec:.2f} tokens/s on {self.fit_set}"
            )
        return best

    def usable(self, present: Sequence[str]) -> np.ndarray:
        """Which of the policy's scales read only the ``present`` modalities (S,)."""
        return np.array([reads_only(m, present) for m in self.modalities])

    def choose(
        self, posterior: np.ndarray, point: OperatingPoint, present: Sequence[str] = ("audio", "video")
    ) -> List[Choice]:
        """Per utterance (rows of ``posterior``), the scales to decode at
        among those that read only the ``present`` modalities."""
        usable = self.usable(present)
        if not usable.any():
            raise ValueError(f"no scale of the policy ({self.scales}) works with {list(present)} only")
        objective = posterior @ self.wer + point.tradeoff * self.tokens_per_sec
        objective[:, ~usable] = np.inf
        audio_visual = np.array([set(m) == {"audio", "video"} for m in self.modalities]) & usable
        audio_only = [m == ["audio"] for m in self.modalities]
        choices = []
        for row in objective:
            first = int(row.argmin())
            if point.threshold is not None and audio_only[first] and audio_visual.any():
                second = int(np.where(audio_visual, row, np.inf).argmin())
                choices.append(Choice(self.scales[first], self.scales[second], point.threshold))
            else:
                choices.append(Choice(self.scales[first]))
        return choices

    def save(self, path: Path) -> None:
        state = {
            "fit_set": self.fit_set,
            "conditions": self.conditions,
            "scales": self.scales,
            "modalities": self.modalities,
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "wer": self.wer.tolist(),
            "tokens_per_sec": self.tokens_per_sec.tolist(),
            "points": [asdict(p) for p in self.points],
            "decoding": self.decoding,
        }
        Path(path).write_text(json.dumps(state, indent=1) + "\n")

    def check(self) -> None:
        """Raises ValueError unless the parts fit together."""
        c, s = len(self.conditions), len(self.scales)
        shapes = {"wer": (self.wer.shape, (c, s)), "bias": (self.bias.shape, (c,)),
                  "weights": (self.weights.shape[:1], (c,)), "tokens_per_sec": (self.tokens_per_sec.shape, (s,))}
        wrong = [f"{k} is {have}, not {want}" for k, (have, want) in shapes.items() if have != want]
        if len(self.modalities) != s:
            wrong.append(f"{len(self.modalities)} modalities for {s} scales")
        if not self.points:
            wrong.append("no operating points")
        if wrong:
            raise ValueError("; ".join(wrong))

    @staticmethod
    def load(path: Path) -> "AdaptivePolicy":
        try:
            state = json.loads(Path(path).read_text())
            policy = AdaptivePolicy(
                conditions=state["conditions"],
                scales=state["scales"],
                modalities=state["modalities"],
                weights=np.asarray(state["weights"], dtype=np.float64),
                bias=np.asarray(state["bias"], dtype=np.float64),
                wer=np.asarray(state["wer"], dtype=np.float64),
                tokens_per_sec=np.asarray(state["tokens_per_sec"], dtype=np.float64),
                points=[OperatingPoint(**p) for p in state["points"]],
                fit_set=state.get("fit_set", ""),
                decoding=dict(state.get("decoding", {})),
            )
            policy.check()
            return policy
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path} not found: --scale adaptive needs the policy fitted for this model "
                "(the recipe's stage 13 with --policy_set, or python -m espnet_mtsk.bin.fit_policy), "
                "or pass --policy_file"
            ) from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not an adaptive policy ({e})") from e


def run_choices(choices: Sequence[Choice], decode: Callable[[str, List[int]], Sequence[float]]) -> List[List[str]]:
    """Carries out per-utterance choices: a pass's utterances of one scale go
    to ``decode(scale, utterances)`` together, which returns their
    transcripts' scores; a cascade's second pass takes those whose first
    score is below its threshold. -> the scales each utterance was decoded
    at, in order: its last pass's transcript is the one it keeps. Decoding
    and ``simulate`` both run the policy through it, so the fitted operating
    points are those decoding reaches."""
    passes: List[List[str]] = [[] for _ in choices]
    todo = {i: choice.first for i, choice in enumerate(choices)}
    while todo:
        by_scale: Dict[str, List[int]] = {}
        for i, scale in todo.items():
            by_scale.setdefault(scale, []).append(i)
        todo = {}
        for scale, utterances in by_scale.items():
            for i, score in zip(utterances, decode(scale, utterances)):
                passes[i].append(scale)
                if len(passes[i]) == 1 and choices[i].needs_second(score):
                    todo[i] = choices[i].second
    return passes


def simulate(
    policy: AdaptivePolicy,
    posterior: np.ndarray,
    point: OperatingPoint,
    errors: np.ndarray,
    tokens: np.ndarray,
    scores: np.ndarray,
) -> Tuple[float, float]:
    """What ``point`` gives on utterances decoded at every scale: per
    utterance and scale (U, S) the word errors, LLM tokens and transcript
    scores. Returns the summed errors and tokens, both passes charged."""
    index = {s: i for i, s in enumerate(policy.scales)}
    passes = run_choices(policy.choose(posterior, point), lambda scale, utts: scores[utts, index[scale]])
    total_tokens = sum(float(tokens[u, index[s]]) for u, scales in enumerate(passes) for s in scales)
    total_errors = sum(float(errors[u, index[scales[-1]]]) for u, scales in enumerate(passes))
    return total_errors, total_tokens


def pareto(points: Sequence[OperatingPoint]) -> List[OperatingPoint]:
    """The points no other point beats in both WER and tokens/s, by cost."""
    front, best = [], math.inf
    for p in sorted(points, key=lambda p: (p.tokens_per_sec, p.wer)):
        if p.wer < best:
            front.append(p)
            best = p.wer
    return front
