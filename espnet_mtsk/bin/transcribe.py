#!/usr/bin/env python3
"""Transcribe a user's media files of any length (face and/or speech).

    python -m espnet_mtsk.bin.transcribe talk.mp4 [more.mp4 ...] \\
        --model_tag model.zip --scale a16_v5 --subtitles srt,vtt,json --output_dir subs
    python -m espnet_mtsk.bin.transcribe talk.mp4 --asr_model_file exp/x/valid.acc.ave.pth \\
        --scale auto --budget_tokens_per_sec 10
    python -m espnet_mtsk.bin.transcribe talk.mp4 --model_tag model.zip \\
        --scale adaptive --budget_tokens_per_sec 12   # a scale per segment

Each file's sound is read at 16 kHz (``fileio.decode_audio``, as the training
data) and cut into speech segments that fit the model's window by Silero VAD;
the mouth is tracked over those segments, a frame at a time
(``data.mouth_track``); the segments are decoded in batches, in order, and
printed as they finish, one line each: ``<file> [start --> end] <text>``.
A segment where no face is found is decoded from the sound alone (the
scale's audio-only counterpart), and so is one whose face keeps its lips
still (a photo, a voice-over), unless lips move elsewhere in the file: then
the picture shows its talker, and a segment where that talker is still is
left out (``--still_lips audio`` decodes it too, ``skip`` leaves every
still-lips segment out). A file without sound is read from the lips over
fixed windows; an audio-only scale never starts the face tracker. The JSON
subtitles say per segment what was read and why.
``--vad false`` decodes each file whole, as a clip.

``--subtitles srt,vtt,json`` writes ``<output_dir>/<file stem>.<format>``
once a file is done (never half-written); inputs whose stems meet keep their
extension (``talk.mp4.srt``) or gain their folders' names (``a_talk.srt``). Only a progress bar (long files),
one line per problem file and errors reach stderr; ``--verbose`` shows each
segment's choices and MediaPipe's own messages. A file that fails (no
decodable stream, corrupt) is named and the others go on; the exit status is
1 when any file failed. A file without speech gives an empty transcript.

Python: ``transcribe_file(avsr, path)`` (the text) or
``longform.transcribe_long(avsr, path)`` (the segments).
"""

import argparse
import contextlib
import io
import itertools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet2.utils.types import str2bool

# ESPnet's attention module prints to stdout when flash-attn is missing, and
# stdout carries the transcript: the message is logged (--verbose) instead.
with contextlib.redirect_stdout(io.StringIO()) as _import_messages:
    from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.cli import add_pretrained_arguments, model_source, native_stderr_silenced
from espnet_mtsk.data.mouth_roi import MOUTH_SIZE
from espnet_mtsk.decoding.longform import STILL_LIPS, LongForm, transcribe_long
from espnet_mtsk.decoding.subtitles import FORMATS, write_subtitles


def transcribe_file(avsr: AVSR2Text, path: str, scale: Optional[str] = None, **options) -> str:
    """One file -> its transcript at ``scale`` (default: the decoder's); the
    options are ``LongForm``'s."""
    return " ".join(s.text for s in transcribe_long(avsr, path, scale, **options) if s.text)


def timestamp(seconds: float) -> str:
    """Seconds -> ``HH:MM:SS.mmm``."""
    millis = int(round(seconds * 1000))
    return f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d}.{millis % 1000:03d}"


def subtitle_stems(paths: Sequence[str], output_dir: Optional[str]) -> Dict[str, Path]:
    """Each input's subtitle path without its format suffix: ``<output_dir
    or the file's folder>/<file stem>``. Files whose stems would meet there
    keep their extension (``talk.mp4``), then gain as many of their folders'
    names as tell them apart (``a_talk.mp4``): two files never share a
    subtitle path, and a file without a namesake keeps its stem."""
    real = {p: Path(p).resolve() for p in paths}
    folder = {p: Path(output_dir) if output_dir else Path(p).parent for p in paths}
    names = {p: Path(p).stem for p in paths}
    for depth in itertools.count(1):
        files: Dict[Path, set] = {}
        for p in paths:
            files.setdefault(folder[p] / names[p], set()).add(real[p])
        clashing = [p for p in paths if len(files[folder[p] / names[p]]) > 1]
        if not clashing:
            return {p: folder[p] / names[p] for p in paths}
        for p in clashing:
            names[p] = "_".join(real[p].parts[-depth:])


def transcribe_to(transcriber: LongForm, path: str, formats: List[str], stem: Path, progress: bool) -> None:
    """Prints ``path``'s segments as they are decoded and writes its
    subtitle files (``stem``.<format>); the progress bar shows files of more
    than one segment."""
    from tqdm import tqdm

    plan = transcriber.plan(path)
    segments = []
    with tqdm(total=len(plan.spans), desc=Path(path).name, unit="seg", file=sys.stderr,
              disable=not progress or len(plan.spans) < 2, leave=False) as bar:
        for segment in transcriber(plan):
            segments.append(segment)
            bar.update(1)
            if segment.scale:
                bar.clear()
                print(f"{path} [{timestamp(segment.start)} --> {timestamp(segment.end)}] {segment.text}", flush=True)
                bar.refresh()
    logging.info(f"{path}: {len(segments)} segments, decoded at {sorted({s.scale for s in segments if s.scale})}")
    for fmt in formats:
        write_subtitles(f"{stem}.{fmt}", segments, path, plan.duration)


@contextlib.contextmanager
def _logging_to_stderr(verbose: bool):
    """Log records (INFO with ``verbose``, else WARNING) to the current
    ``sys.stderr`` for the block; the handler goes with the block, as the
    stream may (``native_stderr_silenced``). Without ``verbose``, libraries'
    deprecation notices and espnet_model_zoo's unpacking notice are not shown:
    they are for developers, not for a user."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
    level = root.level
    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", module="espnet_model_zoo")
        root.addHandler(handler)
        root.setLevel(logging.INFO if verbose else logging.WARNING)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="media files: a face and/or speech, any length")
    parser.add_argument("--model_tag", help="a packed model: zip, URL or espnet_model_zoo tag")
    parser.add_argument("--asr_train_config")
    parser.add_argument("--asr_model_file")
    add_pretrained_arguments(parser)
    parser.add_argument("--scale", default=None,
                        help="scale id (e.g. a16_v5), 'auto' (one scale within the budget) or "
                        "'adaptive' (a scale per segment, the model's fitted policy, within the budget)")
    parser.add_argument("--budget_tokens_per_sec", type=float)
    parser.add_argument("--budget_rtf", type=float)
    parser.add_argument("--scale_table", help="default: scale_table.json beside the model file")
    parser.add_argument("--policy_file", help="--scale adaptive: default policy.json beside the model file")
    parser.add_argument("--crop_size", type=int, default=MOUTH_SIZE,
                        help="mouth crop side in pixels (as the model was trained)")
    parser.add_argument(
        "--av_tolerance", type=float, default=None,
        help="largest gap (s) by which the sound may outlast the picture without a warning; "
        "speech past the picture is decoded from the sound alone (default: the model's "
        "training value, 0.2 unless its config says otherwise)",
    )
    parser.add_argument("--vad", type=str2bool, default=True,
                        help="cut the sound into speech segments (false: each file whole, as a clip)")
    parser.add_argument("--batch_size", type=int, default=8, help="segments decoded together")
    parser.add_argument("--still_lips", choices=STILL_LIPS, default="auto",
                        help="a segment whose face is there but whose lips do not move: 'auto' decodes it "
                        "from the sound alone unless lips move elsewhere in the file (then it is left out: "
                        "babble or talk behind the talker on screen); 'audio' always decodes it from the "
                        "sound (an off-screen voice); 'skip' always leaves it out")
    parser.add_argument("--still_lips_activity", type=float, default=0.018,
                        help="lips whose opening (over the mouth's width) varies less (standard "
                        "deviation over the segment) are still")
    parser.add_argument("--subtitles", default="",
                        help=f"comma-separated formats to write per file: {', '.join(FORMATS)}")
    parser.add_argument("--output_dir", help="where subtitle files go (default: beside each file)")
    parser.add_argument("--progress", type=str2bool, default=True, help="a progress bar on stderr")
    parser.add_argument("--verbose", action="store_true",
                        help="log each segment's choices and MediaPipe's own messages")
    parser.add_argument("--beam_size", type=int, default=15)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--ngpu", type=int, default=0)
    return parser


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    formats = [f for f in args.subtitles.split(",") if f]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise SystemExit(f"--subtitles: unknown format(s) {unknown}; choose among {list(FORMATS)}")
    with native_stderr_silenced(not args.verbose), _logging_to_stderr(args.verbose):
        if _import_messages.getvalue():
            logging.info(_import_messages.getvalue().strip())
        if not args.verbose:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        avsr = AVSR2Text.from_pretrained(
            **model_source(args),
            beam_size=args.beam_size,
            max_new_tokens=args.max_new_tokens,
            budget_tokens_per_sec=args.budget_tokens_per_sec,
            budget_rtf=args.budget_rtf,
            policy_file=args.policy_file,
            scale_table=args.scale_table,
            pretrained_dirs=dict(args.pretrained_dir),
            accept_pretrained_changes=args.accept_pretrained_changes,
            av_tolerance=args.av_tolerance,
        )
        transcriber = LongForm(avsr, args.scale, args.crop_size, args.batch_size, args.vad,
                               still_lips=args.still_lips, still_lips_activity=args.still_lips_activity)
        if args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
        failed = 0
        stems = subtitle_stems(args.files, args.output_dir)
        for path in args.files:
            try:
                transcribe_to(transcriber, path, formats, stems[path], args.progress)
            except (ValueError, FileNotFoundError) as e:
                failed += 1
                logging.error(str(e) if path in str(e) else f"{path}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
