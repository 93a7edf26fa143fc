"""Speech segments of a long recording, each short enough for the model.

The detector is Silero VAD (the ``silero-vad`` wheel carries its TorchScript
model, so it runs offline; MIT licence; about 1 ms per 32 ms of audio on one
CPU thread, and trained on speech in many languages and noises, which an
energy threshold is not). Silero pads its segments and splits those longer
than the model's window at their longest pause; they are then cut at the
40 ms frame grid shared by audio (640 samples) and video (one frame at 25
fps), and neighbours closer than ``merge_gap`` joined while the result still
fits.
"""

import logging
from dataclasses import dataclass
from typing import List

import numpy as np
import torch

from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, Span


def load_silero():
    """Silero VAD's TorchScript model from the wheel.

    Importing the package sets torch's intra-op threads to 1 for the whole
    process; the setting is restored so the LLM keeps every core.
    """
    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    finally:
        torch.set_num_threads(threads)
    return load_silero_vad()


def to_frame_grid(span: Span, duration: float) -> Span:
    """(start, end) rounded outwards to whole 40 ms video frames within
    ``[0, duration]``, so the audio and video of a segment have the lengths
    training data has (``len(speech) == 640 * len(video)``)."""
    start = np.floor(span[0] * VIDEO_FPS) / VIDEO_FPS
    end = min(np.ceil(span[1] * VIDEO_FPS), np.floor(duration * VIDEO_FPS)) / VIDEO_FPS
    return float(max(0.0, start)), float(end)


def merge_close(spans: List[Span], gap: float, longest: float) -> List[Span]:
    """Neighbouring spans closer than ``gap`` seconds joined, as long as the
    joined span lasts at most ``longest`` seconds."""
    merged: List[Span] = []
    for start, end in spans:
        if merged and start - merged[-1][1] < gap and end - merged[-1][0] <= longest:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def fixed_windows(duration: float, window: float) -> List[Span]:
    """``[0, duration]`` cut into equal pieces of at most ``window`` seconds
    (on the frame grid): the segments of a file without sound."""
    if duration <= 0:
        return []
    count = int(np.ceil(duration / window - 1e-9))
    edges = [to_frame_grid((0, duration * i / count), duration)[1] for i in range(count + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


@dataclass
class SpeechSegmenter:
    """16 kHz speech (S,) -> speech spans [(start, end)] in seconds, in order.

    ``window``: the longest segment the model takes (its audio encoder's
    window); ``threshold``: Silero's speech probability; ``min_silence``:
    a pause shorter than this does not end a segment; ``pad``: seconds kept
    on each side of the detected speech; ``merge_gap``: segments closer than
    this are decoded together while they fit the window.
    """

    window: float
    threshold: float = 0.5
    min_speech: float = 0.25
    min_silence: float = 0.3
    pad: float = 0.1
    merge_gap: float = 0.3

    def __post_init__(self):
        if self.window <= 2 * self.pad + self.min_speech:
            raise ValueError(f"a window of {self.window} s leaves no room for speech")
        self._model = None

    def __call__(self, speech: np.ndarray) -> List[Span]:
        from silero_vad import get_speech_timestamps

        if self._model is None:
            self._model = load_silero()
        duration = len(speech) / SAMPLE_RATE
        # Silero pads each segment (neighbours closer than two pads meet
        # half-way) and keeps padded speech within max_speech_duration_s,
        # split at its longest pause; the frame grid may add 40 ms a side.
        found = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(speech, dtype=np.float32)),
            self._model,
            threshold=self.threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=int(self.min_speech * 1000),
            max_speech_duration_s=self.window - 2 / VIDEO_FPS,
            min_silence_duration_ms=int(self.min_silence * 1000),
            speech_pad_ms=int(self.pad * 1000),
        )
        spans: List[Span] = []
        for t in found:
            start, end = to_frame_grid((t["start"] / SAMPLE_RATE, t["end"] / SAMPLE_RATE), duration)
            # Neighbours that met half-way may overlap by a frame on the grid.
            start = max(start, spans[-1][1]) if spans else start
            if end > start:
                spans.append((start, end))
        spans = merge_close(spans, self.merge_gap, self.window)
        logging.debug(f"VAD: {len(spans)} segments in {duration:.1f} s")
        return spans


def samples_in(speech: np.ndarray, span: Span) -> np.ndarray:
    """The samples of ``speech`` (S,) inside ``span``."""
    return speech[round(span[0] * SAMPLE_RATE) : round(span[1] * SAMPLE_RATE)]
