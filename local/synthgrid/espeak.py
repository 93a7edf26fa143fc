"""espeak-ng speech with phoneme timings, at 16 kHz.

The library runs in a small helper process (:mod:`.espeak_server`, one per
client process, started on first use) that synthesises each request in a
fresh fork, so the output depends only on the request; see there why.
"""

import json
import os
import struct
import subprocess
import sys
from typing import List, Optional, Tuple

import numpy as np

from espnet_mtsk.fileio import from_pcm16, resample_to_16k
_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "espeak_server.py")


class Synthesizer:
    """A client of one espeak server process. Use :func:`get_synthesizer`."""

    def __init__(self):
        self.pid = os.getpid()
        self._server = subprocess.Popen(
            [sys.executable, _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.native_rate = self._receive()[0]["sample_rate"]

    def _receive(self) -> Tuple[dict, np.ndarray]:
        header = self._server.stdout.read(8)
        if len(header) < 8:
            raise RuntimeError(f"the espeak server exited (code {self._server.poll()})")
        n_json, n_samples = struct.unpack("<II", header)
        info = json.loads(self._server.stdout.read(n_json))
        samples = np.frombuffer(self._server.stdout.read(2 * n_samples), dtype="<i2")
        return info, samples

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        noise_seed: int = 0,
    ) -> Tuple[np.ndarray, List[Tuple[str, float]]]:
        """Speaks ``text`` (UTF-8; espeak phoneme codes allowed in ``[[ ]]``).

        Args:
            voice: an espeak voice, optionally with a variant ("en-us+m3").
            rate: words per minute (80..450).
            pitch, pitch_range: espeak's 0..100 (50 is the voice's own).
            noise_seed: seeds the frication and breath noise.

        Returns:
            (float32 (S,) at 16 kHz in [-1, 1],
            [(espeak phoneme mnemonic, start s)], starts increasing).
        """
        request = dict(text=text, voice=voice, rate=rate, pitch=pitch, range=pitch_range, seed=noise_seed)
        self._server.stdin.write(json.dumps(request).encode() + b"\n")
        self._server.stdin.flush()
        info, samples = self._receive()
        if "error" in info:
            raise RuntimeError(f"espeak failed on '{text}' ({voice}): {info['error']}")
        wave = from_pcm16(resample_to_16k(from_pcm16(samples), self.native_rate))
        return wave, [(name, ms / 1000.0) for name, ms in info["phonemes"]]


_SYNTHESIZER: Optional[Synthesizer] = None


def get_synthesizer() -> Synthesizer:
    """This process's synthesizer, started on first use. A forked process
    starts its own rather than sharing its parent's server."""
    global _SYNTHESIZER
    if _SYNTHESIZER is None or _SYNTHESIZER.pid != os.getpid():
        _SYNTHESIZER = Synthesizer()
    return _SYNTHESIZER
