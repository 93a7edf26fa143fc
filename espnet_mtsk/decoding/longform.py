"""Media of any length -> timed transcript segments.

The sound is cut into speech segments that fit the model's window
(``vad.SpeechSegmenter``; fixed windows for a file without sound), the
mouth is tracked over the same spans, streamed (``MouthTrack``), and the
segments are decoded in batches, in order. Each segment is decoded at the
chosen scale with what it has: a segment where the face is missing is
decoded from the sound alone (the scale's audio-only counterpart), a file
without sound from the lips. An audio-only scale never starts the face
tracker.

    >>> transcriber = LongForm(AVSR2Text.from_pretrained("model.zip"), scale="a4_v3")
    >>> for segment in transcriber(transcriber.plan("talk.mp4")):
    ...     print(segment.start, segment.end, segment.text)
"""

import logging
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from espnet_mtsk.data.mouth_roi import MOUTH_SIZE
from espnet_mtsk.data.mouth_track import MouthTrack
from espnet_mtsk.decoding.vad import SpeechSegmenter, fixed_windows, samples_in, to_frame_grid
from espnet_mtsk.fileio import SAMPLE_RATE, Span, decode_audio, from_pcm16, media_streams
from espnet_mtsk.model import DATA_NAMES

STILL_LIPS = ("auto", "audio", "skip")
MOVING_ELSEWHERE = "lips move elsewhere in the file: not the talker on screen; --still_lips audio decodes it"
# The longest segment for an audio encoder without a window of its own (a
# conformer) or a lips-only model: Whisper's, about LRS3's longest clip.
DEFAULT_WINDOW = 30.0


@dataclass
class Segment:
    """One stretch of a file: times in seconds, the transcript, the scale it
    was decoded at and the modalities that scale read (empty text, scale
    and modalities: not transcribed), and ``why`` the scale reads less than
    the file's scale asks ("" when it reads all of it)."""

    start: float
    end: float
    text: str
    scale: str
    modalities: Tuple[str, ...]
    why: str = ""

    def as_dict(self) -> dict:
        return dict(asdict(self), modalities=list(self.modalities))


@dataclass
class Plan:
    """What ``LongForm`` decodes of one file: its speech spans, its sound
    (16 kHz float, None without sound track), the file's scale and whether
    that scale reads the lips (and so the face is tracked); ``notes``
    gathers, while it is decoded, the spans that lacked something, by what."""

    path: str
    duration: float
    spans: List[Span]
    speech: Optional[np.ndarray]
    scale: str
    track_face: bool
    notes: Dict[str, List[Span]] = field(default_factory=dict)


def longest_segment(avsr) -> float:
    """Seconds of the longest segment ``avsr``'s model takes."""
    encoders = avsr.model.encoders
    longest = getattr(encoders["audio"], "longest_input", None) if "audio" in encoders else None
    return float(longest()) if callable(longest) else DEFAULT_WINDOW


class LongForm:
    """Transcribes files of any length with an ``AVSR2Text``.

    ``scale``: a scale id, "auto" (the decoder's budget), "adaptive" (a
    scale per segment, the model's fitted policy) or None (the decoder's
    own); ``vad=False`` decodes each file whole, as one clip (it must fit the
    window); ``batch_size`` segments are decoded together;
    ``min_face_fraction``: a segment whose face is found in fewer of its
    frames is decoded from the sound alone. A segment whose face is there
    but whose lips do not move (``mouth_track.lip_activity`` under
    ``still_lips_activity``) is not the visible face's speech: a still
    picture, a voice-over, an off-screen voice, or babble behind a listener.
    ``still_lips="auto"`` (the default) decodes it from the sound alone
    unless lips move in another segment of the file: then the picture shows
    its talker, and a segment where that talker is still is left out
    (Silero takes babble for speech, which it is, and the LLM would make a
    sentence of it). Such segments wait until a moving mouth or the file's
    end decides. ``"audio"`` always decodes them from the sound,
    ``"skip"`` always leaves them out. Sound that outlasts the picture by
    more than the decoder's ``av_tolerance`` is said once (phone and screen
    recordings often do); its frames past the picture count as faceless.
    """

    def __init__(
        self,
        avsr,
        scale: Optional[str] = None,
        crop_size: int = MOUTH_SIZE,
        batch_size: int = 8,
        vad: bool = True,
        segmenter: Optional[SpeechSegmenter] = None,
        min_face_fraction: float = 0.5,
        still_lips: str = "auto",
        still_lips_activity: float = 0.018,
    ):
        if still_lips not in STILL_LIPS:
            raise ValueError(f"still_lips must be one of {STILL_LIPS}, got {still_lips!r}")
        self.avsr, self.crop_size, self.batch_size, self.vad = avsr, crop_size, batch_size, vad
        self.scale = scale if scale is not None else avsr.scale
        self.window = longest_segment(avsr)
        self.segmenter = segmenter or SpeechSegmenter(window=self.window)
        self.min_face_fraction = min_face_fraction
        self.still_lips, self.still_lips_activity = still_lips, still_lips_activity
        self.av_tolerance = avsr.train_args.av_tolerance

    def plan(self, path: str) -> Plan:
        """Reads the file's sound and finds its speech spans. Raises
        ValueError / FileNotFoundError naming the file when it cannot be
        read or the model can use none of its streams."""
        sound, picture = media_streams(path)
        present = [m for m, there in (("audio", sound), ("video", picture))
                   if there is not None and m in self.avsr.model.encoders]
        scale = self.avsr.resolve_scale(self.scale, present, name=path)
        track_face = "video" in self.avsr.modalities_of(scale)
        speech, duration = None, picture
        if sound is not None:
            pcm, rate = decode_audio(path)
            if rate != SAMPLE_RATE:
                logging.info(f"{path}: audio at {rate} Hz, resampled to {SAMPLE_RATE} Hz")
            speech = from_pcm16(pcm)
            duration = len(speech) / SAMPLE_RATE
            if track_face and duration - picture > self.av_tolerance:
                logging.warning(
                    f"{path}: the sound lasts {duration:.2f} s but the picture {picture:.2f} s: "
                    f"speech past {picture:.2f} s is decoded from the sound alone"
                )
        if not self.vad:
            if duration > self.window:
                raise ValueError(
                    f"{path}: {duration:.2f} s is longer than the model's window ({self.window:g} s): "
                    "decode it in speech segments (--vad true)"
                )
            spans = [to_frame_grid((0.0, duration), duration)]
        elif speech is not None:
            spans = self.segmenter(speech)
        else:
            spans = fixed_windows(duration, self.window)
        return Plan(path, duration, spans, speech, scale, track_face)

    def __call__(self, plan: Plan) -> Iterator[Segment]:
        """The plan's segments, decoded, in order (a batch at a time); a
        segment that is not decoded comes with empty text, scale and
        modalities (the log says why)."""
        if not plan.spans:
            logging.warning(f"{plan.path}: no speech found: the transcript is empty")
            return
        if plan.track_face:
            tracked = MouthTrack(plan.path, self.crop_size, self.min_face_fraction)(plan.spans)
        else:
            tracked = ((span, None, None, None) for span in plan.spans)
        pending: List[list] = []  # [span, inputs, why] in order
        held: List[list] = []  # still-lips entries of pending the file has yet to decide
        moving = False  # lips moved in some segment of the file
        for span, crops, found, lips in tracked:
            entry = [span, {}, ""]
            if plan.speech is not None:
                entry[1]["speech"] = samples_in(plan.speech, span)
            if crops is None and found is not None:
                entry[2] = f"no face (in {found:.0%} of the frames)"
                plan.notes.setdefault("no face", []).append(span)
            elif crops is not None and lips < self.still_lips_activity:
                entry[2] = f"lips still (activity {lips:.3f})"
                plan.notes.setdefault("lips still", []).append(span)
                if self.still_lips == "skip":
                    self._leave_out(plan, entry, "--still_lips skip")
                elif self.still_lips == "auto" and moving:
                    self._leave_out(plan, entry, MOVING_ELSEWHERE)
                elif self.still_lips == "auto":
                    held.append(entry)
            elif crops is not None:
                entry[1]["video"] = crops
                if not moving and self.still_lips == "auto":
                    moving = True
                    for waiting in held:
                        self._leave_out(plan, waiting, MOVING_ELSEWHERE)
                    held = []
            pending.append(entry)
            while not held and len(pending) >= self.batch_size:
                yield from self._decode(plan, pending[: self.batch_size])
                pending = pending[self.batch_size :]
        for i in range(0, len(pending), self.batch_size):
            yield from self._decode(plan, pending[i : i + self.batch_size])
        self._summarise(plan)

    def _leave_out(self, plan: Plan, entry: list, reason: str) -> None:
        """Marks a still-lips segment as not transcribed, for ``reason``."""
        entry[1] = {}
        entry[2] += f": not transcribed ({reason})"
        plan.notes.setdefault("not transcribed", []).append(entry[0])
        logging.info(f"{plan.path}: {entry[0][0]:.2f}-{entry[0][1]:.2f} s: {entry[2]}")

    def _decode(self, plan: Plan, pending) -> Iterator[Segment]:
        """Decodes segments [span, inputs, why], a batch per scale and inputs, in order."""
        scales = {}
        for index, (span, inputs, _) in enumerate(pending):
            modalities = [m for m, key in DATA_NAMES.items() if key in inputs]
            if not modalities:
                continue
            name = f"{plan.path} {span[0]:.2f}-{span[1]:.2f} s"
            if pending[index][2] and "video" not in inputs:
                logging.info(f"{name}: {pending[index][2]}, decoding from the sound alone")
            try:
                scale = self.avsr.resolve_scale(plan.scale, modalities, name=name)
            except ValueError as e:
                logging.info(f"{e}: not transcribed")
                plan.notes.setdefault("nothing the scale reads", []).append(span)
                pending[index][2] = f"{pending[index][2]}; {e}".lstrip("; ")
                continue
            # One batch per scale and inputs: the adaptive policy keeps its
            # id whatever a segment lacks.
            scales.setdefault((scale, tuple(modalities)), []).append(index)
        decoded: Dict[int, Tuple[str, str]] = {}
        for (scale, _), indices in scales.items():
            batch = self.avsr.batch([(f"{plan.path}@{pending[i][0][0]:.2f}", pending[i][1]) for i in indices])
            out = self.avsr.decode_scales(batch, [scale])[scale]
            decoded.update({i: (text, passes[-1]) for i, text, passes in zip(indices, out.texts, out.passes)})
        for index, ((start, end), _, why) in enumerate(pending):
            text, scale = decoded.get(index, ("", ""))
            modalities = tuple(self.avsr.model.scale(scale).modalities) if scale else ()
            yield Segment(start, end, text, scale, modalities, why)

    def _summarise(self, plan: Plan) -> None:
        """One line for a file some of whose segments lacked something."""
        from_sound = "decoded from the sound alone"
        left_out = len(plan.notes.get("not transcribed", []))
        actions = {
            "no face": from_sound,
            "lips still": f"{left_out} not transcribed ({MOVING_ELSEWHERE if self.still_lips == 'auto' else '--still_lips skip'}), "
            f"the others {from_sound}" if left_out else from_sound,
            "nothing the scale reads": "not transcribed",
        }
        for what, spans in plan.notes.items():
            if what == "not transcribed":
                continue
            where = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in spans[:5]) + (" ..." if len(spans) > 5 else "")
            action = actions[what]
            logging.warning(f"{plan.path}: {what} in {len(spans)} of {len(plan.spans)} segments ({where} s): {action}")


def transcribe_long(avsr, path: str, scale: Optional[str] = None, **options) -> List[Segment]:
    """All segments of ``path`` (see ``LongForm`` for the options)."""
    transcriber = LongForm(avsr, scale, **options)
    return list(transcriber(transcriber.plan(path)))
