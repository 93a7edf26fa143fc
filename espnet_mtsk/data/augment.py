"""On-the-fly noise augmentation of training audio (the paper's babble noise)."""

from typing import Dict, Sequence

import numpy as np
import soundfile
import torch
import torchaudio
from espnet2.fileio.read_text import read_2columns_text
from typeguard import typechecked


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


class NoiseAugmenter:
    """Mixes a random noise file of ``noise_scp`` into the speech.

    In: speech (S,) float32 at the noise files' sample rate. Out: (S,), noisy
    with probability ``prob`` at an SNR drawn uniformly from ``snr_range``
    (dB), unchanged otherwise. Noise files are read once and kept.

    Args:
        noise_scp: Kaldi-style ``id path`` list of noise wavs.
        snr_range: (low, high) SNR in dB.
        prob: probability of adding noise to an utterance.
    """

    @typechecked
    def __init__(
        self,
        noise_scp: str,
        snr_range: Sequence[float] = (-5.0, 20.0),
        prob: float = 0.5,
        sample_rate: int = 16000,
    ):
        if len(snr_range) != 2 or snr_range[0] > snr_range[1]:
            raise ValueError(f"snr_range must be (low, high), got {snr_range}")
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.prob = prob
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
