"""Synthetic speakers: an espeak voice and variant, a speaking rate and
pitch, and a mouth appearance, all drawn from the run seed."""

import itertools
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from local.synthgrid.espeak import get_synthesizer
from local.synthgrid.grammar import espeak_text
from local.synthgrid.render import Appearance, random_appearance
from local.synthgrid.seeding import rng_for

# The English espeak-ng voices (accents); the mbrola ones need mbrola.
VOICES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Voice-quality variants: formant scaling, pitch range, breathiness.
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
RATE_WPM = (140, 190)


@dataclass(frozen=True)
class Speaker:
    spk_id: str
    voice: str
    variant: str
    rate: int  # words per minute
    pitch: int  # espeak base pitch 0..100 (50 is the voice's own)
    pitch_range: int  # espeak intonation range 0..100
    look: Appearance

    @property
    def espeak_voice(self) -> str:
        return f"{self.voice}+{self.variant}"

    def speak(self, words: Sequence[str], noise_seed: int) -> Tuple[np.ndarray, List[Tuple[str, float]]]:
        """GRID words -> (float32 (S,) at 16 kHz, [(phoneme, start s)])."""
        return get_synthesizer().synthesize(
            espeak_text(words), self.espeak_voice, self.rate, self.pitch, self.pitch_range, noise_seed
        )


def draw_speakers(seed: int, counts: Dict[str, int]) -> Dict[str, List[Speaker]]:
    """Draws disjoint speaker sets, one per group.

    Args:
        counts: speakers per group in id order, e.g. {"train": 12, "dev": 2,
            "test": 4, "noise": 12}. Speakers of the "noise" group get ids
            n01, n02, ...; all others share one numbering s01, s02, ...

    Returns:
        group -> speakers. No (voice, variant) pair is in two groups or twice
        in one, so rate and pitch are never the only difference.
    """
    pairs = list(itertools.product(VOICES, VARIANTS))
    if sum(counts.values()) > len(pairs):
        raise ValueError(f"at most {len(pairs)} speakers in all, asked for {sum(counts.values())}")
    rng = rng_for(seed, "speakers")
    order = rng.permutation(len(pairs))
    width = max(2, len(str(sum(counts.values()))))
    groups, taken, numbers = {}, 0, {"s": 0, "n": 0}
    for group, count in counts.items():
        prefix = "n" if group == "noise" else "s"
        groups[group] = []
        for index in order[taken : taken + count]:
            numbers[prefix] += 1
            spk_id = f"{prefix}{numbers[prefix]:0{width}d}"
            groups[group].append(_speaker(seed, spk_id, pairs[index]))
        taken += count
    return groups


def draw_pretrain_speakers(seed: int, count: int, groups: Dict[str, List[Speaker]]) -> List[Speaker]:
    """``count`` talkers (ids p001, p002, ...) for pre-training an encoder
    apart from the task's data: their (voice, variant) pairs are those no
    speaker of ``groups`` has, in the seed's order, each given to several
    talkers once every free pair has one; each talker has its own rate,
    pitch and look. The i-th talker is the same whatever ``count`` (below
    1000)."""
    taken = {(s.voice, s.variant) for members in groups.values() for s in members}
    rng = rng_for(seed, "pretrain-speakers")
    free = [pair for pair in itertools.product(VOICES, VARIANTS) if pair not in taken]
    if count and not free:
        raise ValueError(f"every one of the {len(taken)} voices is taken: no voice is left for pre-training talkers")
    free = [free[i] for i in rng.permutation(len(free))]
    width = max(3, len(str(count)))
    return [_speaker(seed, f"p{i + 1:0{width}d}", free[i % len(free)]) for i in range(count)]


def _speaker(seed: int, spk_id: str, pair: Tuple[str, str]) -> Speaker:
    draw = rng_for(seed, "speaker", spk_id)
    return Speaker(
        spk_id=spk_id,
        voice=pair[0],
        variant=pair[1],
        rate=int(draw.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        pitch=int(draw.integers(35, 66)),
        pitch_range=int(draw.integers(30, 71)),
        look=random_appearance(draw),
    )
