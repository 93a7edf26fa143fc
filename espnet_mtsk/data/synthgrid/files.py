"""Atomic file writing: each file appears complete or not at all, so an
interrupted run leaves no half-written wav, video or list behind."""

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000

# mkstemp's default names ("tmp" + 8 characters + suffix), which
# espnet_mtsk.data.video.write_video_npy uses too.
_TEMP_NAME = re.compile(r"^tmp[a-z0-9_]{8}(\.[a-z0-9]+)?$")


def _temp_beside(path: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=Path(path).suffix)
    os.close(fd)
    return tmp


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """float (S,) in [-1, 1] -> int16 (S,), clipping outside the range."""
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 (S,) -> float32 (S,) in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def write_wav(path: str, pcm: np.ndarray) -> None:
    """Writes int16 samples (S,) as a 16 kHz mono PCM16 wav, atomically."""
    tmp = _temp_beside(path)
    try:
        sf.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_wav(path: str) -> np.ndarray:
    """A 16 kHz mono PCM16 wav -> int16 samples (S,)."""
    pcm, rate = sf.read(path, dtype="int16")
    if rate != SAMPLE_RATE or pcm.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {pcm.shape}")
    return pcm


def write_lines(path: str, lines: Iterable[str]) -> None:
    """Writes text lines (newline-terminated), atomically."""
    tmp = _temp_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{line}\n" for line in lines)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def remove_temp_files(root: str) -> int:
    """Deletes temp files an interrupted run left under ``root``; -> count."""
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if _TEMP_NAME.match(name):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed
