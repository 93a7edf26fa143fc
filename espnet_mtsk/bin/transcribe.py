#!/usr/bin/env python3
"""Transcribe a user's video files (face + speech) with a trained model.

    python -m espnet_mtsk.bin.transcribe talk.mp4 [more.mp4 ...] \\
        --model_tag model.zip --scale a16_v5
    python -m espnet_mtsk.bin.transcribe talk.mp4 --asr_model_file exp/x/valid.acc.ave.pth \\
        --scale auto --budget_tokens_per_sec 10

Each file's sound track is read and resampled to 16 kHz (logged; by
``fileio.decode_audio``, as the LRS training data), its frames
resampled to 25 fps (logged) and cropped to the mouth (``mouth_roi``); the
model decodes at the requested scale and prints ``<file> <transcript>``. A
file without sound track is decoded from the lips alone (the VSR scale of the
same video rate, or the budget's choice among VSR scales); a file with no
face, or one that does not decode, gets a message naming it and the other
files go on. The exit status is 1 when any file failed. Sound and picture
whose durations differ by more than ``--av_tolerance`` seconds (phone and
screen recordings often do) are cut to the span both cover, with a warning
giving both durations; training and test data keep the strict check.

Python: ``transcribe_file(avsr, path)`` with an ``AVSR2Text``.
"""

import argparse
import logging
import sys
from typing import Dict, List, Optional

import numpy as np

from espnet_mtsk.bin.avsr_inference import AVSR2Text, add_pretrained_arguments
from espnet_mtsk.cli import model_source
from espnet_mtsk.data.mouth_roi import MOUTH_SIZE, crop_mouth_file
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, decode_audio, from_pcm16


def load_media(path: str, modalities, crop_size: int = MOUTH_SIZE) -> Dict[str, np.ndarray]:
    """The inputs of ``path`` the model can use: ``speech`` (S,) float at
    16 kHz and/or ``video`` (T, crop_size, crop_size) mouth crops at 25 fps."""
    inputs = {}
    if "audio" in modalities:
        track = decode_audio(path)
        if track is None:
            logging.warning(f"{path}: no sound track, decoding from the lips alone")
        else:
            pcm, rate = track
            if rate != SAMPLE_RATE:
                logging.info(f"{path}: audio at {rate} Hz, resampled to {SAMPLE_RATE} Hz")
            inputs["speech"] = from_pcm16(pcm)
    if "video" in modalities:
        inputs["video"] = crop_mouth_file(path, crop_size)
    if not inputs:
        raise ValueError(f"{path}: nothing the model can read")
    return inputs


def common_span(path: str, inputs: Dict[str, np.ndarray], tolerance: float) -> Dict[str, np.ndarray]:
    """``inputs`` cut to the span both sound and picture cover when their
    durations differ by more than ``tolerance`` seconds (both are taken to
    start together), with a warning that gives both durations."""
    if "speech" not in inputs or "video" not in inputs:
        return inputs
    audio_sec = len(inputs["speech"]) / SAMPLE_RATE
    video_sec = len(inputs["video"]) / VIDEO_FPS
    if abs(audio_sec - video_sec) <= tolerance:
        return inputs
    seconds = min(audio_sec, video_sec)
    logging.warning(
        f"{path}: the sound lasts {audio_sec:.2f} s but the picture {video_sec:.2f} s "
        f"(more than --av_tolerance {tolerance:g} s apart): decoding the first "
        f"{seconds:.2f} s, which both cover"
    )
    return {
        "speech": inputs["speech"][: round(seconds * SAMPLE_RATE)],
        "video": inputs["video"][: round(seconds * VIDEO_FPS)],
    }


def transcribe_file(
    avsr: AVSR2Text, path: str, scale: Optional[str] = None, crop_size: int = MOUTH_SIZE
) -> str:
    """One file -> its transcript at ``scale`` (default: the decoder's).
    Sound and picture further apart than the decoder's ``av_tolerance`` are
    cut to their common span (``common_span``)."""
    modalities = {m for s in avsr.model.scales for m in s.modalities}
    inputs = common_span(path, load_media(path, modalities, crop_size), avsr.train_args.av_tolerance)
    available = [m for m, key in (("audio", "speech"), ("video", "video")) if key in inputs]
    scale_id = avsr.resolve_scale(scale or avsr.scale, available, name=path)
    texts, _, _ = avsr.decode_scales(avsr.single_batch(path, **inputs), [scale_id])[scale_id]
    logging.info(f"{path}: decoded at {scale_id}")
    return texts[0]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="video files with a face (and sound)")
    parser.add_argument("--model_tag", help="a packed model: zip, URL or espnet_model_zoo tag")
    parser.add_argument("--asr_train_config")
    parser.add_argument("--asr_model_file")
    add_pretrained_arguments(parser)
    parser.add_argument("--scale", default=None, help="scale id (e.g. a16_v5) or 'auto'")
    parser.add_argument("--budget_tokens_per_sec", type=float)
    parser.add_argument("--budget_rtf", type=float)
    parser.add_argument("--scale_table", help="default: scale_table.json beside the model file")
    parser.add_argument("--crop_size", type=int, default=MOUTH_SIZE,
                        help="mouth crop side in pixels (as the model was trained)")
    parser.add_argument(
        "--av_tolerance", type=float, default=None,
        help="largest gap (s) between the durations of sound and picture decoded as they "
        "are; a file further apart is cut to the span both cover, with a warning "
        "(default: the model's training value, 0.2 unless its config says otherwise)",
    )
    parser.add_argument("--beam_size", type=int, default=15)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--ngpu", type=int, default=0)
    return parser


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    avsr = AVSR2Text.from_pretrained(
        **model_source(args),
        beam_size=args.beam_size,
        max_new_tokens=args.max_new_tokens,
        budget_tokens_per_sec=args.budget_tokens_per_sec,
        budget_rtf=args.budget_rtf,
        scale_table=args.scale_table,
        pretrained_dirs=dict(args.pretrained_dir),
        accept_pretrained_changes=args.accept_pretrained_changes,
        av_tolerance=args.av_tolerance,
    )
    failed = 0
    for path in args.files:
        try:
            print(f"{path} {transcribe_file(avsr, path, args.scale, args.crop_size)}", flush=True)
        except (ValueError, FileNotFoundError) as e:
            failed += 1
            logging.error(str(e) if path in str(e) else f"{path}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
