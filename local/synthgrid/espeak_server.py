"""libespeak-ng over ctypes, served to one client through stdin/stdout.

Run as a script (``python espeak_server.py``) by :mod:`.espeak`; it imports
only the standard library, so that it stays small.

espeak carries state from one message to the next (e.g. its waveform
generator's gain control), so the same text spoken twice in one process
comes out a few samples apart. The server therefore initialises espeak and
never speaks itself: each request is synthesised in a forked child, which
starts from the same fresh state every time. Forking this small process costs
about a millisecond.

Protocol (all integers little-endian uint32):
    request:  one JSON line {"text", "voice", "rate", "pitch", "range", "seed"}
    response: n_json, n_samples, then n_json bytes of JSON
              ({"phonemes": [[mnemonic, start ms], ...]} or {"error": msg}),
              then n_samples int16 samples at the native rate.
    On start-up the server sends one response {"sample_rate": Hz}.

Struct layouts and constants follow espeak-ng's ``speak_lib.h`` (API
revision 12, espeak-ng 1.51).
"""

import array
import ctypes
import json
import os
import struct
import sys

LIBRARY = "libespeak-ng.so.1"
# espeak_AUDIO_OUTPUT: SYNCHRONOUS is RETRIEVAL (audio handed to our
# callback) except that espeak_Synth returns only once synthesis is done, so
# the callback runs on the calling thread and no espeak_Synchronize is needed.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
# Lets the text carry phoneme codes in [[ ]].
_PHONEMES = 0x100
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),  # phoneme mnemonic, NUL-padded
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


class Espeak:
    """The library, initialised for synchronous retrieval with phoneme events."""

    def __init__(self):
        self.lib = ctypes.CDLL(LIBRARY)
        self.libc = ctypes.CDLL(None)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        # Returns the native sample rate (22050 Hz) or -1.
        self.sample_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.sample_rate})")
        self.samples = array.array("h")
        self.phonemes = []
        # Kept as an attribute: the trampoline must outlive espeak's pointer.
        self.callback = _CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self.callback)

    def _collect(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self.samples.frombytes(ctypes.string_at(wav, 2 * n_samples))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = events[i].id.string.decode("utf-8", errors="replace")
                self.phonemes.append((name, events[i].audio_position))
            i += 1
        return 0  # continue

    def speak(self, text: str, voice: str, rate: int, pitch: int, range: int, seed: int):
        """-> (int16 samples at ``sample_rate``, [(phoneme, start ms)])."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak has no voice '{voice}'")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        # espeak draws frication and breath noise from libc's rand.
        self.libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        data = text.encode("utf-8") + b"\0"
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _PHONEMES, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on '{text}'")
        return self.samples, self.phonemes


def _send(out, info: dict, samples=b"") -> None:
    payload = json.dumps(info).encode()
    out.write(struct.pack("<II", len(payload), len(samples) // 2) + payload + bytes(samples))
    out.flush()


def serve(requests, out) -> None:
    espeak = Espeak()
    _send(out, {"sample_rate": espeak.sample_rate})
    for line in requests:
        pid = os.fork()
        if pid == 0:  # child: speak once, answer, exit without cleanup
            try:
                try:
                    samples, phonemes = espeak.speak(**json.loads(line))
                    _send(out, {"phonemes": phonemes}, samples.tobytes())
                except Exception as e:  # reported to the client, which raises
                    _send(out, {"error": f"{type(e).__name__}: {e}"})
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status != 0:  # the child died (e.g. a crash in espeak) before answering
            _send(out, {"error": f"espeak child died with wait status {status}"})


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
