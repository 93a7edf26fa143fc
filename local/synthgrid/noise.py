"""Babble noise from synthetic talkers, and the SNR of a mixture (mixing
itself is ``espnet_mtsk.data.augment.mix_at_snr``, shared with training)."""

from typing import Sequence

import numpy as np

from espnet_mtsk.fileio import SAMPLE_RATE
from local.synthgrid.grammar import random_sentence
from local.synthgrid.speakers import Speaker

BABBLE_RMS = 0.05  # about -26 dBFS


def babble(
    talkers: Sequence[Speaker], seconds: float, rng: np.random.Generator, n_talkers: int = 6
) -> np.ndarray:
    """Overlapping GRID sentences of several talkers -> babble.

    Each of ``n_talkers`` streams is one talker (drawn from ``talkers``,
    without repeats while enough are left) saying random sentences with
    short pauses, starting at a random point; the streams are summed at
    equal level and scaled to RMS :data:`BABBLE_RMS`.

    Returns:
        float32 (round(seconds * 16000),).
    """
    n_samples = int(round(seconds * SAMPLE_RATE))
    replace = n_talkers > len(talkers)
    mix = np.zeros(n_samples, np.float32)
    for index in rng.choice(len(talkers), n_talkers, replace=replace):
        parts, length = [], 0
        lead_in = int(rng.integers(SAMPLE_RATE))  # so that streams do not start together
        while length < n_samples + lead_in:
            wave, _ = talkers[index].speak(random_sentence(rng), int(rng.integers(2**31)))
            wave = wave / (np.sqrt(np.mean(wave**2)) + 1e-9)
            pause = np.zeros(int(rng.uniform(0.05, 0.3) * SAMPLE_RATE), np.float32)
            parts += [wave, pause]
            length += len(wave) + len(pause)
        mix += np.concatenate(parts)[lead_in : lead_in + n_samples]
    return (mix * BABBLE_RMS / (np.sqrt(np.mean(mix**2)) + 1e-9)).astype(np.float32)


def measure_snr(speech: np.ndarray, mixture: np.ndarray) -> float:
    """SNR in dB of ``mixture`` = speech + noise, given the clean speech."""
    noise = mixture.astype(np.float64) - speech
    return float(10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise**2)))
