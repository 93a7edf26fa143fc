"""One set of utterances as Kaldi data dirs in the three ways a ``wav.scp``
lists audio: files, pipes (``cat f.wav |``) and segments of a recording."""

from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import soundfile as sf

SECONDS = {"u0": 0.6, "u1": 1.0, "u2": 0.8}
LAYOUTS = ("files", "pipes", "segments")


def tones(seconds: Mapping[str, float] = SECONDS) -> Dict[str, np.ndarray]:
    """{utt: float32 (S,) 16 kHz}: a sine of its own pitch each, PCM16 exact."""
    out = {}
    for i, (utt, sec) in enumerate(seconds.items()):
        t = np.arange(round(sec * 16000)) / 16000
        out[utt] = np.round(0.1 * np.sin(2 * np.pi * 220 * (1 + i) * t) * 32768).astype(np.float32) / 32768
    return out


def write_audio_dirs(
    root: Path, waves: Mapping[str, np.ndarray], lists: Optional[Mapping[str, str]] = None
) -> Dict[str, Path]:
    """``waves`` ({utt: float32 (S,)}) as PCM16 wavs under ``root/audio`` and
    a data dir ``root/<layout>`` per layout of LAYOUTS -> {layout: dir}.
    Every dir also holds ``lists`` ({file name: content}, e.g. ``text``).
    The segments' recording has 0.25 s of noise before each utterance, so
    a stretch cut at the wrong place reads noise."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    for utt, wave in waves.items():
        sf.write(str(audio / f"{utt}.wav"), wave, 16000, subtype="PCM_16")
    gap = np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32)
    pieces, segments, at = [], [], 0
    for utt, wave in waves.items():
        pieces += [gap, wave]
        at += len(gap)
        segments.append(f"{utt} rec {at / 16000:.4f} {(at + len(wave)) / 16000:.4f}")
        at += len(wave)
    sf.write(str(audio / "rec.wav"), np.concatenate(pieces), 16000, subtype="PCM_16")
    tables = {
        "files": {"wav.scp": [f"{utt} {audio / utt}.wav" for utt in waves]},
        "pipes": {"wav.scp": [f"{utt} cat {audio / utt}.wav |" for utt in waves]},
        "segments": {"wav.scp": [f"rec {audio / 'rec.wav'}"], "segments": segments},
    }
    dirs = {}
    for layout, files in tables.items():
        dirs[layout] = root / layout
        dirs[layout].mkdir()
        for name, lines in files.items():
            (dirs[layout] / name).write_text("".join(f"{line}\n" for line in lines))
        for name, content in (lists or {}).items():
            (dirs[layout] / name).write_text(content)
    return dirs
