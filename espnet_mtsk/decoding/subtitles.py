"""Timed transcripts as subtitle files: SRT and WebVTT through pysubs2,
JSON (segments with the scale and modalities each was decoded with) through
the json module; each file written whole or not at all."""

import json
from pathlib import Path
from typing import Sequence

from espnet_mtsk.fileio import atomic_path

FORMATS = ("srt", "vtt", "json")


def write_subtitles(path: str, segments: Sequence, media: str, duration: float) -> None:
    """Writes ``segments`` (``longform.Segment``) of ``media`` to ``path``;
    the format is the suffix's (``.srt``, ``.vtt`` or ``.json``)."""
    fmt = Path(path).suffix.lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: subtitles are written as {', '.join(FORMATS)}, not {fmt!r}")
    with atomic_path(path) as tmp:
        if fmt == "json":
            record = dict(
                file=media,
                duration=duration,
                text=" ".join(s.text for s in segments if s.text),
                segments=[s.as_dict() for s in segments],
            )
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1, ensure_ascii=False)
                f.write("\n")
            return
        import pysubs2

        subs = pysubs2.SSAFile()
        for s in segments:
            if s.text:
                subs.append(pysubs2.SSAEvent(start=pysubs2.make_time(s=s.start), end=pysubs2.make_time(s=s.end), text=s.text))
        subs.save(tmp, format_=fmt, encoding="utf-8")
