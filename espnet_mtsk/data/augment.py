"""On-the-fly noise augmentation of training audio (the paper's babble noise)."""

from typing import Dict, Tuple

import numpy as np
import soundfile
import torch
import torchaudio
from espnet2.fileio.read_text import read_2columns_text
from typeguard import typechecked

from espnet_mtsk.fileio import SAMPLE_RATE

# ESPnet's CommonPreprocessor spells an SNR range "low_high" (or one value).
DEFAULT_DB_RANGE = "-5_20"


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Adds noise to speech at an SNR measured over the whole utterance.

    Args:
        speech: float32 (S,).
        noise: float32 (N,), any length: a stretch of S samples is taken
            from a random offset, wrapping around when N < S.
        snr_db: 10 log10(speech energy / scaled noise energy).
        rng: draws the offset.

    Returns:
        float32 (S,): speech + scaled noise. Where that would clip, the
        whole mixture is scaled down, which leaves the SNR as it is.
    """
    offset = int(rng.integers(len(noise)))
    segment = noise[(offset + np.arange(len(speech))) % len(noise)]
    mixed = torchaudio.functional.add_noise(
        torch.from_numpy(speech.astype(np.float32))[None],
        torch.from_numpy(segment.astype(np.float32))[None],
        torch.tensor([float(snr_db)]),
    )[0].numpy()
    peak = np.abs(mixed).max()
    return mixed * (0.99 / peak) if peak > 0.99 else mixed


def parse_db_range(text: str) -> Tuple[float, float]:
    """ESPnet's ``noise_db_range`` format -> (low, high) SNR in dB: "-5_20",
    or one value ("5", low = high). Anything else is a ValueError."""
    try:
        values = [float(v) for v in text.split("_")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or values[0] > values[1]:
        raise ValueError(f"noise_db_range must be 'low_high' (e.g. -5_20) or one value, got {text!r}")
    return values[0], values[1]


class NoiseAugmenter:
    """Mixes a random noise file of ``noise_scp`` into the speech.

    In: speech (S,) float32 at the noise files' sample rate. Out: (S,), noisy
    with probability ``apply_prob`` at an SNR drawn uniformly from
    ``db_range`` (dB), unchanged otherwise. Noise files are read once and
    kept. The options are ESPnet's (``CommonPreprocessor``).

    Args:
        noise_scp: Kaldi-style ``id path`` list of noise wavs.
        db_range: SNR range in dB, "low_high" or one value.
        apply_prob: probability of adding noise to an utterance.
    """

    @typechecked
    def __init__(
        self,
        noise_scp: str,
        db_range: str = DEFAULT_DB_RANGE,
        apply_prob: float = 0.5,
        sample_rate: int = SAMPLE_RATE,
    ):
        self.snr_range = parse_db_range(db_range)
        self.prob = apply_prob
        self.noises: Dict[str, np.ndarray] = {}
        for key, path in read_2columns_text(noise_scp).items():
            try:
                wav, rate = soundfile.read(path, dtype="float32", always_2d=True)
            except (OSError, RuntimeError) as e:
                raise ValueError(f"{noise_scp}: cannot read noise '{key}' ({path}): {e}")
            if rate != sample_rate:
                raise ValueError(
                    f"{noise_scp}: noise '{key}' ({path}) is {rate} Hz, expected {sample_rate}"
                )
            self.noises[key] = wav.mean(axis=1)
        if not self.noises:
            raise ValueError(f"{noise_scp}: no noise files listed")
        self.keys = sorted(self.noises)

    def __call__(self, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.prob:
            return speech
        noise = self.noises[self.keys[int(rng.integers(len(self.keys)))]]
        return mix_at_snr(speech, noise, rng.uniform(*self.snr_range), rng)
