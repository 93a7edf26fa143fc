"""A long-form SynthGRID test set: test utterances strung into face videos
minutes long, with pauses, babble-only stretches and a stretch without face.

    python -m local.synthgrid.longform --data_dir data/test_clean \\
        --noise_scp data/noise/wav.scp --out_dir data/test_long --seed 0 \\
        [--size 256x256] [--preset veryfast] [--crf 18]

A recording holds the utterances of ``--speakers_per_recording`` test
speakers (in id order), each after a pause of 0.6..1.5 s of silence. In
``--babble_stretches`` of those pauses, 3..5 s of babble (a random stretch
of a ``--noise_scp`` file) sits between two pauses, ``--babble_snr`` dB
below the recording's speech as the noisy test sets mix it (energy over
whole utterances); a run of ``--faceless_utts`` utterances, neither the
first nor the last, is spoken with no face in the picture. The picture is
scikit-image's astronaut whose mouth is each utterance's rendered mouth-ROI
frames, pasted where ``mouth_roi`` crops (:class:`FaceCompositor`); through
pauses and babble the mouth rests (the neighbouring utterance's closed
mouth). The layout depends only on the seed and the recording.

Under ``out_dir``, Kaldi-style tables sorted by key, and the media:
    recordings.scp  rec media/<rec>.mp4: face video (libx264) and sound (AAC)
    reco2dur        rec seconds
    segments        utt rec start end: the true speech, seconds from the
                    first to past the last sample above -60 dBFS
    text, utt2spk, spk2utt
    utt2face        utt 1 (face in the picture) or 0
    babble          <rec>_babble<k> rec start end: the babble-only stretches
    clips.scp       utt media/clips/<utt>.mp4: the utterance alone (its own
                    silences at each end), pictured as in its recording, for
                    decoding the same utterances as clips
"""

import argparse
import logging
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.cli import native_stderr_silenced
from espnet_mtsk.data.mouth_roi import crop_mouth, detect_landmarks, mouth_transforms, new_face_mesh
from espnet_mtsk.data.video import VideoScpReader, write_video_mp4
from espnet_mtsk.fileio import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    VIDEO_FPS,
    from_pcm16,
    read_wav,
    write_data_dir,
    write_lines,
)
from local.synthgrid.seeding import rng_for

# The astronaut's head in scikit-image's 512 x 512 picture (rows, columns).
# The whole picture at 256 x 256 gives a face so small that a 32 px mouth
# crop spans 13 frame pixels and the pasted mouth would be lost; the head
# alone at 256 puts about 1.1 frame pixels under each crop pixel.
HEAD = (slice(9, 201), slice(129, 321))
# The face (an ellipse: centre x, y and half-axes, in head pixels), painted
# over from its surroundings for the frames without face.
FACE_ELLIPSE = ((96, 118), (58, 74))
# Crop pixels over which the pasted mouth fades into the face beyond the
# crop's edge. Crops of pasted frames (before calibration, 4 speakers) were
# 3.3 gray levels off the rendered ones with this fade, 3.9 with 4 px of
# the mouth's edge repeated then a 4 px fade, 5.4-7.7 with wider pastes:
# those hide the astronaut's mouth corners, which MediaPipe also reads.
EDGE = 6
SPEECH_FLOOR = 1e-3  # -60 dBFS: what counts as sound for the true speech times
PAUSE = (0.6, 1.5)  # seconds of silence before each utterance
BABBLE = (3.0, 5.0)  # seconds of each babble-only stretch


def head_and_shoulders(size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(width, height) -> the face frame and the same without face, each
    (height, width, 3) uint8 RGB: the astronaut's head in a square of side
    min(width, height) in the middle, its edge pixels repeated to the sides."""
    import cv2
    from skimage.data import astronaut

    head = astronaut()[HEAD]
    mask = np.zeros(head.shape[:2], np.uint8)
    cv2.ellipse(mask, FACE_ELLIPSE[0], FACE_ELLIPSE[1], 0, 0, 360, 255, -1)
    faceless = cv2.inpaint(head, mask, 5, cv2.INPAINT_TELEA)
    width, height = size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    frames = []
    for image in (head, faceless):
        # Area averaging when shrinking, so the face keeps its detail.
        interpolation = cv2.INTER_AREA if side < len(head) else cv2.INTER_CUBIC
        square = cv2.resize(image, (side, side), interpolation=interpolation)
        frames.append(cv2.copyMakeBorder(square, top, height - side - top, left, width - side - left,
                                         cv2.BORDER_REPLICATE))
    return frames[0], frames[1]


class FaceCompositor:
    """Rendered mouth-ROI frames (crop_size, crop_size) uint8 -> face frames
    (height, width, 3) uint8 from which ``mouth_roi.crop_mouth(frames,
    crop_size)`` gives them back.

    Each mouth frame is warped into the face by the inverse of the map
    ``mouth_roi`` takes from frame to crop, fading over ``EDGE`` crop
    pixels beyond the crop, and tinted with the skin's colour at the gray
    level it has (the crop's grayscale is the rendered frame's). The map is
    first the one MediaPipe finds on the still face; ``calibrate`` then
    fits it to where MediaPipe finds the pasted mouth (a smaller, plainer
    mouth than the astronaut's moves its mouth landmarks by 2-3 px).
    ``faceless`` is the frame with the face painted over, where MediaPipe
    finds none.
    """

    def __init__(self, size: Tuple[int, int] = (256, 256), crop_size: int = 32, face_mesh=None):
        self.face, self.faceless = head_and_shoulders(size)
        self.crop_size = crop_size
        points = detect_landmarks(self.face[None], face_mesh)
        if np.isnan(points).any():
            raise ValueError(f"MediaPipe finds no face in the astronaut at {size[0]}x{size[1]}")
        self.transform = mouth_transforms(points, crop_size)[0]
        # Per channel over gray, at the skin the crop covers: RGB = gray *
        # tint has that gray level again (cv2's RGB -> gray weights).
        skin = self._warp(self.face.astype(np.float32), self.transform, crop_size).reshape(-1, 3).mean(0)
        self.tint = (skin / (skin @ [0.299, 0.587, 0.114])).astype(np.float32)
        inside = np.arange(crop_size + 2 * EDGE) - EDGE
        distance = np.minimum(inside, crop_size - 1 - inside)  # < 0 beyond the crop
        ramp = np.clip((distance + 0.5) / EDGE + 1, 0, 1)
        self._mask = np.minimum.outer(ramp, ramp).astype(np.float32)

    @staticmethod
    def _warp(image: np.ndarray, transform: np.ndarray, size: int) -> np.ndarray:
        import cv2

        return cv2.warpAffine(image, transform, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def paste(self, mouth: np.ndarray, transform: Optional[np.ndarray] = None) -> np.ndarray:
        """A mouth frame (crop_size, crop_size) -> the face frame (H, W, 3)
        uint8 with it, by ``transform`` (2, 3), frame -> crop pixels
        (default: the still face's)."""
        import cv2

        transform = self.transform if transform is None else transform
        # The padded mouth's pixel (u, v) is the crop's (u - EDGE, v - EDGE).
        shifted = transform.copy()
        shifted[:, 2] += EDGE
        side = self.crop_size + 2 * EDGE
        # Only the frame pixels the padded square covers are warped.
        inverse = cv2.invertAffineTransform(shifted)
        corners = np.array([[-1, -1], [side, -1], [side, side], [-1, side]], float)
        spots = corners @ inverse[:, :2].T + inverse[:, 2]
        height, width = self.face.shape[:2]
        x0, y0 = np.clip(np.floor(spots.min(0)).astype(int), 0, [width, height])
        x1, y1 = np.clip(np.ceil(spots.max(0)).astype(int) + 1, 0, [width, height])
        shifted[:, 2] += shifted[:, :2] @ [x0, y0]
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        padded = cv2.copyMakeBorder(mouth, EDGE, EDGE, EDGE, EDGE, cv2.BORDER_REPLICATE).astype(np.float32)
        gray = cv2.warpAffine(padded, shifted, (x1 - x0, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self._mask, shifted, (x1 - x0, y1 - y0), flags=flags, borderValue=0)[..., None]
        out = self.face.copy()
        region = out[y0:y1, x0:x1].astype(np.float32)
        blended = region + alpha * (gray[..., None] * self.tint - region)
        out[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
        return out

    def calibrate(self, mouths: np.ndarray, face_mesh=None, rounds: int = 3) -> np.ndarray:
        """Mouth frames (T, crop_size, crop_size) of one look -> the map
        (2, 3) that ``crop_mouth`` finds, on average over the frames, on the
        face with them pasted by that map (a fixed point; it moves by
        < 0.1 px after two rounds)."""
        transform = self.transform
        for _ in range(rounds):
            frames = np.stack([self.paste(m, transform) for m in mouths])
            transform = crop_mouth(frames, self.crop_size, face_mesh)[1].mean(0)
        return transform


def speech_span(wave: np.ndarray) -> Tuple[int, int]:
    """float (S,) -> (first, past the last) sample above ``SPEECH_FLOOR``
    ((0, 0) for silence)."""
    loud = np.flatnonzero(np.abs(wave) > SPEECH_FLOOR)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)


class Utterance:
    """A test utterance: its sound (S,) float32, S = 640 T (the rendered
    frames' length: the few samples past the last frame are silence, cut),
    and its mouth frames (T, size, size) uint8."""

    def __init__(self, utt_id: str, speaker: str, text: str, wave: np.ndarray, mouths: np.ndarray):
        length = len(mouths) * SAMPLES_PER_FRAME
        self.utt_id, self.speaker, self.text, self.mouths = utt_id, speaker, text, mouths
        self.wave = np.pad(wave[:length], (0, max(0, length - len(wave))))


def load_utterances(data_dir: str) -> List[Utterance]:
    """A data dir (wav.scp, video.scp, text, utt2spk) -> its utterances,
    sorted by id."""
    wavs, texts, speakers = (read_2columns_text(os.path.join(data_dir, n)) for n in ("wav.scp", "text", "utt2spk"))
    videos = VideoScpReader(os.path.join(data_dir, "video.scp"))
    return [
        Utterance(u, speakers[u], texts[u], from_pcm16(read_wav(wavs[u])), videos[u].astype(np.uint8))
        for u in sorted(wavs)
    ]


class Recording:
    """The layout of one recording, drawn from ``rng``: a list of parts
    ("pause", frames), ("babble", frames) and ("utt", index into ``utts``),
    which utterances are faceless, and where each babble stretch is taken
    from (file index, start sample)."""

    def __init__(
        self,
        rec_id: str,
        utts: Sequence[Utterance],
        rng: np.random.Generator,
        noise_lengths: Sequence[int],
        faceless_utts: int,
        babble_stretches: int,
    ):
        self.rec_id, self.utts = rec_id, list(utts)
        count = len(utts)
        faceless = min(faceless_utts, max(0, count - 2))
        first = int(rng.integers(1, count - faceless)) if faceless else 0
        self.faceless = set(range(first, first + faceless))
        # Babble comes before an utterance, in a pause the face is in.
        gaps = [i for i in range(1, count) if not {i - 1, i} <= self.faceless]
        before = set(rng.choice(gaps, min(babble_stretches, len(gaps)), replace=False).tolist()) if gaps else set()
        frames = lambda low_high: int(round(rng.uniform(*low_high) * VIDEO_FPS))  # noqa: E731
        self.parts: List[Tuple[str, int]] = []
        self.babble_sources: List[Tuple[int, int]] = []
        for index in range(count):
            self.parts.append(("pause", frames(PAUSE)))
            if index in before:
                self.parts += [("babble", frames(BABBLE)), ("pause", frames(PAUSE))]
                file = int(rng.integers(len(noise_lengths)))
                self.babble_sources.append((file, int(rng.integers(noise_lengths[file]))))
            self.parts.append(("utt", index))
        self.parts.append(("pause", frames(PAUSE)))

    def frames_of(self, kind: str, value: int) -> int:
        """The length of a part in frames."""
        return len(self.utts[value].mouths) if kind == "utt" else value

    def spans(self) -> Iterator[Tuple[str, int, int]]:
        """(kind, value, first frame) of each part, in order."""
        start = 0
        for kind, value in self.parts:
            yield kind, value, start
            start += self.frames_of(kind, value)

    @property
    def num_frames(self) -> int:
        return sum(self.frames_of(kind, value) for kind, value in self.parts)


def babble_stretch(noise: np.ndarray, start: int, length: int, rms: float) -> np.ndarray:
    """``length`` samples of ``noise`` from ``start`` (wrapping round, as
    ``augment.mix_at_snr`` takes noise), scaled to ``rms``."""
    stretch = noise[(start + np.arange(length)) % len(noise)].astype(np.float64)
    return (stretch * rms / (np.sqrt(np.mean(stretch**2)) + 1e-12)).astype(np.float32)


def recording_sound(rec: Recording, noises: Sequence[np.ndarray], babble_snr: float) -> np.ndarray:
    """The recording's sound (S,) float32, S = 640 x its frames: silence,
    the utterances, and babble at ``babble_snr`` dB below the utterances'
    mean energy."""
    speech_rms = np.sqrt(np.mean(np.concatenate([u.wave for u in rec.utts]).astype(np.float64) ** 2))
    sound = np.zeros(rec.num_frames * SAMPLES_PER_FRAME, np.float32)
    sources = iter(rec.babble_sources)
    for kind, value, start in rec.spans():
        at = start * SAMPLES_PER_FRAME
        if kind == "utt":
            wave = rec.utts[value].wave
            sound[at : at + len(wave)] = wave
        elif kind == "babble":
            file, offset = next(sources)
            length = value * SAMPLES_PER_FRAME
            level = speech_rms / 10 ** (babble_snr / 20)
            sound[at : at + length] = babble_stretch(noises[file], offset, length, level)
    return sound


def utterance_frames(
    compositor: FaceCompositor, utt: Utterance, transform: np.ndarray, face: bool
) -> Iterator[np.ndarray]:
    """The face frames (H, W, 3) of one utterance: its mouth pasted, or the
    faceless frame."""
    for mouth in utt.mouths:
        yield compositor.paste(mouth, transform) if face else compositor.faceless


def recording_frames(
    rec: Recording, compositor: FaceCompositor, transforms: Dict[str, np.ndarray]
) -> Iterator[np.ndarray]:
    """The recording's frames (H, W, 3), one at a time. In a pause or
    babble the mouth rests as the previous utterance ended (the first one
    as it starts); between two faceless utterances there is no face."""
    parts = rec.parts
    for position, (kind, value) in enumerate(parts):
        if kind == "utt":
            utt = rec.utts[value]
            yield from utterance_frames(compositor, utt, transforms[utt.speaker], value not in rec.faceless)
            continue
        before = next((v for k, v in reversed(parts[:position]) if k == "utt"), None)
        after = next((v for k, v in parts[position:] if k == "utt"), None)
        if before is not None and {before, after} <= rec.faceless:
            still = compositor.faceless
        elif before is not None:
            utt = rec.utts[before]
            still = compositor.paste(utt.mouths[-1], transforms[utt.speaker])
        else:
            utt = rec.utts[after]
            still = compositor.paste(utt.mouths[0], transforms[utt.speaker])
        for _ in range(value):
            yield still


def build(
    data_dir: str,
    noise_scp: str,
    out_dir: str,
    seed: int = 0,
    size: Tuple[int, int] = (256, 256),
    preset: str = "veryfast",
    crf: int = 18,
    speakers_per_recording: int = 2,
    faceless_utts: int = 3,
    babble_stretches: int = 2,
    babble_snr: float = 0.0,
) -> None:
    """Writes the long-form set of ``data_dir``'s utterances to ``out_dir``
    (see the module's docstring); ``size`` is (width, height)."""
    utts = load_utterances(data_dir)
    if not utts:
        raise ValueError(f"{data_dir}: no utterances")
    noises = [from_pcm16(read_wav(path)) for _, path in sorted(read_2columns_text(noise_scp).items())]
    if not noises:
        raise ValueError(f"{noise_scp}: no noise files")
    crop_size = utts[0].mouths.shape[1]
    speakers = sorted({u.speaker for u in utts})
    groups = [speakers[i : i + speakers_per_recording] for i in range(0, len(speakers), speakers_per_recording)]
    media = os.path.join(out_dir, "media")
    os.makedirs(os.path.join(media, "clips"), exist_ok=True)
    options = {"preset": preset, "crf": str(crf)}
    tables: Dict[str, Dict[str, str]] = {n: {} for n in ("segments", "text", "utt2spk", "utt2face", "clips.scp")}
    recordings, durations, babble = {}, {}, []
    with new_face_mesh() as face_mesh:
        compositor = FaceCompositor(size, crop_size, face_mesh)
        # One map per speaker: the rendered mouths of a speaker share a look.
        transforms = {
            s: compositor.calibrate(next(u for u in utts if u.speaker == s).mouths, face_mesh) for s in speakers
        }
    for group in groups:
        rec_id = "long_" + "_".join(group)
        rec = Recording(rec_id, [u for u in utts if u.speaker in group], rng_for(seed, "longform", rec_id),
                        [len(n) for n in noises], faceless_utts, babble_stretches)
        sound = recording_sound(rec, noises, babble_snr)
        path = os.path.join(media, f"{rec_id}.mp4")
        write_video_mp4(path, recording_frames(rec, compositor, transforms), audio=sound, options=options)
        recordings[rec_id], durations[rec_id] = path, f"{len(sound) / SAMPLE_RATE:.2f}"
        for kind, value, start in rec.spans():
            at = start / VIDEO_FPS
            if kind == "babble":
                babble.append(f"{rec_id}_babble{len(babble) + 1} {rec_id} {at:.3f} {at + value / VIDEO_FPS:.3f}")
            if kind != "utt":
                continue
            utt = rec.utts[value]
            first, past = speech_span(utt.wave)
            face = value not in rec.faceless
            tables["segments"][utt.utt_id] = f"{rec_id} {at + first / SAMPLE_RATE:.3f} {at + past / SAMPLE_RATE:.3f}"
            tables["text"][utt.utt_id] = utt.text
            tables["utt2spk"][utt.utt_id] = utt.speaker
            tables["utt2face"][utt.utt_id] = str(int(face))
            clip = os.path.join(media, "clips", f"{utt.utt_id}.mp4")
            frames = utterance_frames(compositor, utt, transforms[utt.speaker], face)
            write_video_mp4(clip, frames, audio=utt.wave, options=options)
            tables["clips.scp"][utt.utt_id] = clip
        logging.info(f"{rec_id}: {len(rec.utts)} utterances ({len(rec.faceless)} without face), "
                     f"{len(rec.babble_sources)} babble stretches, {len(sound) / SAMPLE_RATE:.1f} s -> {path}")
    write_data_dir(out_dir, {**tables, "recordings.scp": recordings, "reco2dur": durations})
    write_lines(os.path.join(out_dir, "babble"), babble)


def write_talk(
    path: str,
    data_dir: str,
    seconds: float,
    size: Tuple[int, int] = (1280, 720),
    seed: int = 0,
    preset: str = "veryfast",
    crf: int = 23,
) -> float:
    """One face video of about ``seconds`` (a benchmark's input): the
    utterances of ``data_dir`` in turn, from the first again when they run
    out, after pauses as in the set, with three of them spoken without face
    and no babble; written a frame at a time. -> its duration (s)."""
    utts = load_utterances(data_dir)
    if not utts:
        raise ValueError(f"{data_dir}: no utterances")
    looped, total = [], 0.0
    while total < seconds:
        utt = utts[len(looped) % len(utts)]
        looped.append(utt)
        total += len(utt.mouths) / VIDEO_FPS + sum(PAUSE) / 2
    with new_face_mesh() as face_mesh:
        compositor = FaceCompositor(size, utts[0].mouths.shape[1], face_mesh)
        transforms = {
            s: compositor.calibrate(next(u for u in utts if u.speaker == s).mouths, face_mesh)
            for s in sorted({u.speaker for u in looped})
        }
    rec = Recording("talk", looped, rng_for(seed, "talk"), [], faceless_utts=3, babble_stretches=0)
    sound = recording_sound(rec, [], babble_snr=0.0)
    write_video_mp4(path, recording_frames(rec, compositor, transforms), audio=sound,
                    options={"preset": preset, "crf": str(crf)})
    return len(sound) / SAMPLE_RATE


def frame_size(text: str) -> Tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT (e.g. 1280x720), not {text!r}")
    if width % 2 or height % 2 or min(width, height) < 64:
        raise argparse.ArgumentTypeError(f"{text}: even sides of at least 64 px (H.264 in 4:2:0)")
    return width, height


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="the test set: wav.scp, video.scp, text, utt2spk")
    parser.add_argument("--noise_scp", required=True, help="babble wavs (id path)")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=frame_size, default=(256, 256), help="frame WIDTHxHEIGHT (256x256)")
    parser.add_argument("--preset", default="veryfast", help="libx264 preset (veryfast)")
    parser.add_argument("--crf", type=int, default=18,
                        help="libx264 quality, lower is better (18: the mouth crops come back about "
                             "0.3 gray levels closer than at x264's own 23)")
    parser.add_argument("--speakers_per_recording", type=int, default=2)
    parser.add_argument("--faceless_utts", type=int, default=3, help="utterances per recording without face")
    parser.add_argument("--babble_stretches", type=int, default=2, help="babble-only stretches per recording")
    parser.add_argument("--babble_snr", type=float, default=0.0,
                        help="speech over babble energy in dB, as the noisy test sets' SNR (0)")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    with native_stderr_silenced():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
        build(**vars(args))


if __name__ == "__main__":
    main()
