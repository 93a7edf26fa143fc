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
from espnet_mtsk.fileio import SAMPLE_RATE, decode_audio, from_pcm16, media_streams
from espnet_mtsk.model import DATA_NAMES
from espnet_mtsk.vad import Span, SpeechSegmenter, fixed_windows, segment_of, to_frame_grid

# The longest segment for an audio encoder without a window of its own (a
# conformer) or a lips-only model: Whisper's, about LRS3's longest clip.
DEFAULT_WINDOW = 30.0


@dataclass
class Segment:
    """One stretch of a file: times in seconds, the transcript, the scale it
    was decoded at and the modalities that scale read (empty text, scale
    and modalities: not transcribed, as the log says)."""

    start: float
    end: float
    text: str
    scale: str
    modalities: Tuple[str, ...]

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
    ``still_lips_activity``) is not the visible talker's speech: background
    talk, babble, an off-screen voice. ``still_lips="skip"`` leaves it out
    (Silero takes babble for speech, which it is, and the LLM would make a
    sentence of it); ``"audio"`` decodes it from the sound alone, for videos
    where an off-screen voice matters. Sound that outlasts the picture by
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
        still_lips: str = "skip",
        still_lips_activity: float = 0.018,
    ):
        if still_lips not in ("skip", "audio"):
            raise ValueError(f"still_lips must be 'skip' or 'audio', got {still_lips!r}")
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
        pending = []
        for span, crops, found, lips in tracked:
            inputs, why = {}, None
            if plan.speech is not None:
                inputs["speech"] = segment_of(plan.speech, span)
            if crops is None and found is not None:
                why = f"face in {found:.0%} of the frames"
                plan.notes.setdefault("no face", []).append(span)
            elif crops is not None and lips < self.still_lips_activity:
                why = f"lips still (activity {lips:.3f})"
                plan.notes.setdefault("lips still", []).append(span)
                crops = None
                if self.still_lips == "skip":
                    inputs = {}
            if crops is not None:
                inputs["video"] = crops
            if why:
                what = "decoding from the sound alone" if inputs else "not transcribed"
                logging.info(f"{plan.path}: {span[0]:.2f}-{span[1]:.2f} s: {why}, {what}")
            pending.append((span, inputs))
            if len(pending) == self.batch_size:
                yield from self._decode(plan, pending)
                pending = []
        yield from self._decode(plan, pending)
        self._summarise(plan)

    def _decode(self, plan: Plan, pending) -> Iterator[Segment]:
        """Decodes segments [(span, inputs)], a batch per scale and inputs, in order."""
        scales = {}
        for index, (span, inputs) in enumerate(pending):
            modalities = [m for m, key in DATA_NAMES.items() if key in inputs]
            if not modalities:
                continue
            name = f"{plan.path} {span[0]:.2f}-{span[1]:.2f} s"
            try:
                scale = self.avsr.resolve_scale(plan.scale, modalities, name=name)
            except ValueError as e:
                logging.info(f"{e}: not transcribed")
                plan.notes.setdefault("nothing the scale reads", []).append(span)
                continue
            # One batch per scale and inputs: the adaptive policy keeps its
            # id whatever a segment lacks.
            scales.setdefault((scale, tuple(modalities)), []).append(index)
        decoded: Dict[int, Tuple[str, str]] = {}
        for (scale, _), indices in scales.items():
            batch = self.avsr.batch([(f"{plan.path}@{pending[i][0][0]:.2f}", pending[i][1]) for i in indices])
            out = self.avsr.decode_scales(batch, [scale])[scale]
            decoded.update({i: (text, passes[-1]) for i, text, passes in zip(indices, out.texts, out.passes)})
        for index, ((start, end), _) in enumerate(pending):
            text, scale = decoded.get(index, ("", ""))
            modalities = tuple(self.avsr.model.scale(scale).modalities) if scale else ()
            yield Segment(start, end, text, scale, modalities)

    def _summarise(self, plan: Plan) -> None:
        """One line for a file some of whose segments lacked something."""
        from_sound = "decoded from the sound alone"
        actions = {
            "no face": from_sound,
            "lips still": from_sound if self.still_lips == "audio" else
            "not transcribed (not the talker on screen; --still_lips audio decodes them from the sound)",
            "nothing the scale reads": "not transcribed",
        }
        for what, spans in plan.notes.items():
            where = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in spans[:5]) + (" ..." if len(spans) > 5 else "")
            action = actions[what]
            logging.warning(f"{plan.path}: {what} in {len(spans)} of {len(plan.spans)} segments ({where} s): {action}")


def transcribe_long(avsr, path: str, scale: Optional[str] = None, **options) -> List[Segment]:
    """All segments of ``path`` (see ``LongForm`` for the options)."""
    transcriber = LongForm(avsr, scale, **options)
    return list(transcriber(transcriber.plan(path)))
