"""A long-form set's recordings as users' media come, each a variant of the
same talk, in sync in any player:

- ``late_audio``: the sound track's stream starts ``--audio_delay`` s (0.4)
  after the picture's, as phone recorders and editors write them: its first
  samples are cut and the rest keep their time;
- ``vfr``: every ``--drop_every``-th frame (25) dropped, the others at
  their own times (a variable frame rate: the frame before stays on screen);
- ``still``: the picture one still frame of the recording's first face,
  rotated and shifted (a photo, a podcast's cover), the sound as it was.

    python -m local.synthgrid.media_variants --set_dir data/test_long \\
        --variants late_audio vfr still --out_dir data/test_long_variants

Each variant gets ``<out_dir>/<variant>/``: the set's tables (the same
truth, so ``local.longform_score`` scores it against it) and its own
``recordings.scp`` of ``media/<rec>.mp4``.
"""

import argparse
import itertools
import logging
import os
import shutil
from typing import Iterator, Sequence, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.data.video import write_video_mp4
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, decode_audio, from_pcm16, write_lines

VARIANTS = ("late_audio", "vfr", "still")
TABLES = ("segments", "text", "utt2spk", "utt2face", "babble", "reco2dur")
PHOTO_DEGREES = 8.0  # the still picture's rotation
PHOTO_SHIFT = 0.06  # and its shift, as a share of the frame's width and height


def decoded_frames(path: str) -> Iterator[Tuple[float, np.ndarray]]:
    """A video file's frames as (time s, RGB (H, W, 3)), in order."""
    import av

    with av.open(path) as container:
        for frame in container.decode(video=0):
            yield frame.time, frame.to_ndarray(format="rgb24")


def kept_frames(frames: Iterator[Tuple[float, np.ndarray]], drop_every: int) -> Iterator[Tuple[float, np.ndarray]]:
    """``frames`` less every ``drop_every``-th on the 25 fps grid (the
    frames at j / 25 s with j % drop_every == drop_every - 1); the others
    keep their times."""
    for at, frame in frames:
        if int(round(at * VIDEO_FPS)) % drop_every != drop_every - 1:
            yield at, frame


def photo(frame: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) rotated by PHOTO_DEGREES about its centre and
    shifted by PHOTO_SHIFT of its size, the uncovered border black."""
    import cv2

    height, width = frame.shape[:2]
    warp = cv2.getRotationMatrix2D((width / 2, height / 2), PHOTO_DEGREES, 1.0)
    warp[:, 2] += (PHOTO_SHIFT * width, PHOTO_SHIFT * height)
    return cv2.warpAffine(frame, warp, (width, height))


def first_face_time(set_dir: str, rec: str) -> float:
    """The middle (s) of ``rec``'s first utterance spoken with its face in
    the picture."""
    faces = read_2columns_text(os.path.join(set_dir, "utt2face"))
    spans = [
        (float(start), float(end))
        for utt, (owner, start, end) in ((u, v.split()) for u, v in read_2columns_text(os.path.join(set_dir, "segments")).items())
        if owner == rec and faces[utt] == "1"
    ]
    if not spans:
        raise ValueError(f"{set_dir}: {rec} has no utterance with a face")
    start, end = min(spans)
    return (start + end) / 2


def variant_frames(variant: str, path: str, set_dir: str, rec: str, drop_every: int) -> Iterator[Tuple[float, np.ndarray]]:
    """``path``'s frames as (time s, RGB frame) in ``variant``."""
    if variant == "vfr":
        return kept_frames(decoded_frames(path), drop_every)
    if variant == "still":
        at = first_face_time(set_dir, rec)
        still = photo(next(f for t, f in decoded_frames(path) if t >= at))
        return ((t, still) for t, _ in decoded_frames(path))
    return decoded_frames(path)


def write_variant(variant: str, path: str, out: str, set_dir: str, rec: str, audio_delay: float, drop_every: int) -> None:
    """``path``'s recording as ``variant`` -> ``out``, a frame at a time (see
    the module's docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}': one of {', '.join(VARIANTS)}")
    decoded = decode_audio(path)
    if decoded is None:
        raise ValueError(f"{path}: no sound track")
    sound = from_pcm16(decoded[0])
    delay = audio_delay if variant == "late_audio" else 0.0
    times, pictures = itertools.tee(variant_frames(variant, path, set_dir, rec, drop_every))
    write_video_mp4(out, (f for _, f in pictures), audio=sound[int(round(delay * SAMPLE_RATE)) :],
                    frame_times=(t for t, _ in times), audio_start=delay, options={"preset": "veryfast", "crf": "18"})


def build(set_dir: str, variants: Sequence[str], out_dir: str, audio_delay: float = 0.4, drop_every: int = 25) -> None:
    """Writes each of ``variants`` of ``set_dir``'s recordings to ``out_dir``/<variant>/."""
    recordings = read_2columns_text(os.path.join(set_dir, "recordings.scp"))
    for variant in variants:
        folder = os.path.join(out_dir, variant)
        os.makedirs(os.path.join(folder, "media"), exist_ok=True)
        for name in TABLES:
            shutil.copyfile(os.path.join(set_dir, name), os.path.join(folder, name))
        scp = {}
        for rec, path in sorted(recordings.items()):
            out = os.path.join(folder, "media", f"{rec}.mp4")
            write_variant(variant, path, out, set_dir, rec, audio_delay, drop_every)
            scp[rec] = out
            logging.info(f"{rec} ({variant}) -> {out}")
        write_lines(os.path.join(folder, "recordings.scp"), (f"{r} {scp[r]}" for r in sorted(scp)))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set_dir", required=True, help="a long-form set (local.synthgrid.longform)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--audio_delay", type=float, default=0.4, help="late_audio: seconds (0.4)")
    parser.add_argument("--drop_every", type=int, default=25, help="vfr: every n-th frame dropped (25)")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    build(**vars(args))


if __name__ == "__main__":
    main()
