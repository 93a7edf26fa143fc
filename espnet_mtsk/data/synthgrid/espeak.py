"""A ctypes wrapper over libespeak-ng: text -> 16 kHz waveform + phoneme times.

Struct layouts and constants follow espeak-ng's ``speak_lib.h`` (API
revision 12, espeak-ng 1.51). espeak keeps its state in process globals, so
there is one :class:`Synthesizer` per process (:func:`get_synthesizer`).
"""

import ctypes
from typing import List, Optional, Tuple

import numpy as np
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16000

_LIBRARY = "libespeak-ng.so.1"
# espeak_AUDIO_OUTPUT: SYNCHRONOUS is RETRIEVAL (audio handed to our
# callback) except that espeak_Synth only returns once synthesis is done, so
# the callback runs on the calling thread and no espeak_Synchronize is needed.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
# Lets the text carry phoneme codes in [[ ]], used for letters that espeak
# would otherwise read as words (a lone "a" is the article).
_PHONEMES = 0x100
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms from the start of the message
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class Synthesizer:
    """espeak-ng in synchronous retrieval mode, with phoneme events.

    Use :func:`get_synthesizer` rather than building one: espeak's state is
    global to the process.
    """

    def __init__(self):
        self._lib = ctypes.CDLL(_LIBRARY)
        self._libc = ctypes.CDLL(None)
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self.native_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS
        )
        if self.native_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.native_rate})")
        self._chunks: List[np.ndarray] = []
        self._phonemes: List[Tuple[str, int]] = []
        # Kept as an attribute: ctypes must not free the trampoline while
        # espeak still holds a pointer to it.
        self._callback = _CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = events[i].id.string.decode("utf-8", errors="replace")
                self._phonemes.append((name, events[i].audio_position))
            i += 1
        return 0  # continue synthesis

    def synthesize(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        noise_seed: int = 0,
    ) -> Tuple[np.ndarray, List[Tuple[str, float]]]:
        """Speaks ``text`` (UTF-8; phoneme codes allowed in ``[[ ]]``).

        Args:
            voice: an espeak voice name, optionally with a variant
                ("en-us+m3").
            rate: words per minute (80..450); pitch, pitch_range: 0..100.
            noise_seed: seeds libc's ``rand``, which espeak draws its
                frication and breath noise from, so output does not depend
                on what this process synthesised before.

        Returns:
            (waveform float32 (S,) at 16 kHz in [-1, 1],
            [(espeak phoneme mnemonic, start time in seconds), ...]).
        """
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak has no voice '{voice}'")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._libc.srand(ctypes.c_uint(noise_seed & 0xFFFFFFFF))
        self._chunks, self._phonemes = [], []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(
            data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES, None, None
        )
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on '{text}'")
        native = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        wave = torch.from_numpy(native.astype(np.float32) / 32768.0)
        wave = AF.resample(wave, self.native_rate, SAMPLE_RATE).numpy()
        phonemes = [(name, ms / 1000.0) for name, ms in self._phonemes]
        return wave, phonemes


_SYNTHESIZER: Optional[Synthesizer] = None


def get_synthesizer() -> Synthesizer:
    """This process's synthesizer, initialised on first use."""
    global _SYNTHESIZER
    if _SYNTHESIZER is None:
        _SYNTHESIZER = Synthesizer()
    return _SYNTHESIZER
