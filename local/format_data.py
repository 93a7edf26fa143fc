#!/usr/bin/env python3
"""Stages 3-4: copy a Kaldi-style data dir into dump/, checked and filtered.

Keeps the utterances present in every list (``text`` and the ``wav.scp`` /
``video.scp`` there are), checks that each audio file is readable 16 kHz
mono, writes ``utt2dur`` and, with ``--min_duration`` / ``--max_duration``,
drops utterances outside the range or with an empty transcript. Every dropped
utterance is logged with its reason; nothing is dropped silently. Lists are
written atomically (``fileio.write_data_dir``), so a killed run leaves each
list whole.

``wav.scp`` may list Kaldi pipes (``sox ... |``) and the dir may have a
``segments`` file (its utterance ids are those of the other lists): such
audio is written out as 16 kHz mono PCM16 wavs under ``<dst>/data``, as
ESPnet's format_wav_scp does, because training reads ``wav.scp`` with
ESPnet's ``sound`` type, which reads neither. Plain files are listed as
they are.
"""

import argparse
import logging
from pathlib import Path

import soundfile
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.data.scp import AudioDirReader
from espnet_mtsk.fileio import SAMPLE_RATE, to_pcm16, write_data_dir, write_wav

# utt2condition: the acoustic condition of a noisy set's utterance (SynthGRID).
LISTS = ("video.scp", "text", "utt2spk", "utt2condition")


def format_dir(src: Path, dst: Path, min_duration: float, max_duration: float) -> int:
    tables = {name: read_2columns_text(src / name) for name in LISTS if (src / name).exists()}
    audio = AudioDirReader(src) if (src / "wav.scp").exists() else None
    if audio is not None:
        # None for a pipe or a segment: its audio is written out below.
        tables["wav.scp"] = {utt: audio.file(utt) for utt in audio}
    if "text" not in tables or not ({"wav.scp", "video.scp"} & set(tables)):
        raise FileNotFoundError(f"{src} needs text and wav.scp and/or video.scp")
    keys = set.intersection(*(set(t) for t in tables.values()))
    for name, table in tables.items():
        for utt in sorted(set(table) - keys):
            logging.warning(f"{src}: dropping {utt}: not in every list (found in {name})")
    durations = {}
    for utt in sorted(keys):
        wave = None
        if audio is not None:
            path = tables["wav.scp"][utt]
            if path is None:
                wave = to_pcm16(audio[utt])
                durations[utt] = len(wave) / SAMPLE_RATE
            else:
                info = soundfile.info(path)
                if info.samplerate != SAMPLE_RATE or info.channels != 1:
                    raise ValueError(
                        f"{utt}: {path} is {info.samplerate} Hz with {info.channels} "
                        f"channels; 16 kHz mono is expected"
                    )
                durations[utt] = info.frames / info.samplerate
        if not tables["text"][utt].strip():
            logging.warning(f"{src}: dropping {utt}: empty transcript")
        elif utt in durations and not min_duration <= durations[utt] <= max_duration:
            logging.warning(f"{src}: dropping {utt}: {durations[utt]:.2f} s out of range")
        else:
            if wave is not None:
                tables["wav.scp"][utt] = str(dst / "data" / f"{utt}.wav")
                (dst / "data").mkdir(parents=True, exist_ok=True)
                write_wav(tables["wav.scp"][utt], wave)
            continue
        keys.discard(utt)
    kept = {name: {k: table[k] for k in keys} for name, table in tables.items()}
    if durations:
        kept["utt2dur"] = {k: f"{durations[k]:.3f}" for k in keys}
    write_data_dir(dst, kept)
    logging.info(f"{src} -> {dst}: {len(keys)} utterances")
    return len(keys)


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", type=Path, required=True, help="the folder of the sets' data dirs")
    parser.add_argument("--dst", type=Path, required=True, help="the folder of their copies")
    # One process for all the sets: its imports cost as much as formatting a set.
    parser.add_argument("--sets", nargs="+", required=True, help="names of data dirs under --src")
    parser.add_argument("--min_duration", type=float, default=0.0)
    parser.add_argument("--max_duration", type=float, default=float("inf"))
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    for name in args.sets:
        format_dir(args.src / name, args.dst / name, args.min_duration, args.max_duration)


if __name__ == "__main__":
    main()
