"""Scores long-form transcription of a long-form set (``local.synthgrid.
longform``) beside the same utterances decoded as clips.

    python -m local.longform_score --set_dir data/test_long \\
        --long_dir OUT/{scale}/long --clip_dir OUT/{scale}/clips \\
        --scales a4 a4_v3 --out exp/X/RESULTS_longform.md

``long_dir`` holds ``<rec>.json`` per recording and ``clip_dir``
``<utt>.json`` per utterance, as ``espnet_mtsk.bin.transcribe --subtitles
json`` writes them (``{scale}`` in a folder stands for each scale). Per
scale:

- long-form WER: each recording's transcript against its utterances'
  texts joined in time order; overall, errors over words of all recordings;
  also without the segments that are babble false alarms (below);
- clips WER: the same utterances decoded one clip each, and the difference;
- per-segment WER: each VAD segment against the utterances it overlaps (one
  split in two counts in both; a segment overlapping none is all insertions);
- VAD boundaries: per utterance, the segments overlapping its true speech;
  a hit when their first start and last end are both within ``tolerance``
  seconds of the truth's; also the mean absolute start and end errors;
- babble: the segments found in babble-only stretches (false alarms), and
  their words;
- the face-absent utterances: their segments' modalities (audio alone
  expected) and texts, beside their clips'.

The markdown report goes to ``--out`` and stdout.
"""

import argparse
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import jiwer
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.decoding.scale_request import FIXED, ScaleRequest
from espnet_mtsk.fileio import write_lines
from espnet_mtsk.reporting.scoring import normalise
from espnet_mtsk.scales import parse_scale

TOLERANCE = 0.3  # seconds a segment boundary may be off the true speech boundary
TARGET_WER_GAP = 1.0  # long-form WER points over the clips' at most
TARGET_HITS = 95.0  # % of utterances whose boundaries are within the tolerance


@dataclass
class Stretch:
    """A stretch of a recording: an utterance's true speech (with its text
    and whether its face is in the picture), a babble-only stretch or a
    decoded segment (with its text, scale and modalities)."""

    key: str
    rec: str
    start: float
    end: float
    text: str = ""
    face: bool = True
    scale: str = ""
    modalities: Tuple[str, ...] = ()

    def overlaps(self, other: "Stretch") -> bool:
        return self.rec == other.rec and self.start < other.end and other.start < self.end


def read_set(set_dir: str) -> Tuple[List[Stretch], List[Stretch]]:
    """A long-form set -> its utterances and its babble-only stretches, each
    in recording and time order."""
    segments = read_2columns_text(os.path.join(set_dir, "segments"))
    texts = read_2columns_text(os.path.join(set_dir, "text"))
    faces = read_2columns_text(os.path.join(set_dir, "utt2face"))
    utts = []
    for utt, value in segments.items():
        rec, start, end = value.split()
        utts.append(Stretch(utt, rec, float(start), float(end), normalise(texts[utt]), faces[utt] == "1"))
    babble = []
    for key, value in read_2columns_text(os.path.join(set_dir, "babble")).items():
        rec, start, end = value.split()
        babble.append(Stretch(key, rec, float(start), float(end)))
    order = lambda s: (s.rec, s.start)  # noqa: E731
    return sorted(utts, key=order), sorted(babble, key=order)


def read_transcript(path: str) -> Dict:
    """A transcribe JSON -> its dict; a missing one is an error naming it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no transcript (was the file decoded?)")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def decoded_segments(rec: str, transcript: Dict) -> List[Stretch]:
    """A recording's transcribe JSON -> its segments, in time order."""
    return [
        Stretch(f"{rec}@{s['start']:.2f}", rec, s["start"], s["end"], normalise(s["text"]),
                scale=s["scale"], modalities=tuple(s["modalities"]))
        for s in sorted(transcript["segments"], key=lambda s: s["start"])
    ]


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> Tuple[int, int]:
    """(errors, reference words) over pairs of texts; an empty reference
    makes every word of its hypothesis an insertion."""
    out = jiwer.process_words(list(refs), list(hyps))
    return out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions


def rate(errors: int, words: int) -> float:
    return 100.0 * errors / max(words, 1)


@dataclass
class Boundary:
    """An utterance's segment boundaries against the truth (seconds, segment
    minus truth); None errors when no segment overlaps it."""

    utt: Stretch
    start_error: Optional[float]
    end_error: Optional[float]

    def hit(self, tolerance: float) -> bool:
        return self.start_error is not None and max(abs(self.start_error), abs(self.end_error)) <= tolerance


def boundaries(utts: Sequence[Stretch], segments: Sequence[Stretch]) -> List[Boundary]:
    """Per utterance, the first start and last end of the segments
    overlapping it, against its true speech."""
    out = []
    for utt in utts:
        found = [s for s in segments if s.overlaps(utt)]
        if found:
            out.append(Boundary(utt, min(s.start for s in found) - utt.start, max(s.end for s in found) - utt.end))
        else:
            out.append(Boundary(utt, None, None))
    return out


def read_long_form(utts: Sequence[Stretch], long_dir: str) -> Tuple[List[str], Dict[str, Dict], List[Stretch]]:
    """The recordings of ``utts``, their transcribe JSONs in ``long_dir``
    and all their decoded segments."""
    recs = sorted({u.rec for u in utts})
    transcripts = {r: read_transcript(os.path.join(long_dir, f"{r}.json")) for r in recs}
    return recs, transcripts, [s for r in recs for s in decoded_segments(r, transcripts[r])]


def false_alarms(
    utts: Sequence[Stretch], babble: Sequence[Stretch], segments: Sequence[Stretch]
) -> Tuple[List[Tuple[Stretch, List[Stretch]]], List[Stretch]]:
    """Each babble-only stretch with the segments overlapping it, and the
    false alarms: those segments that reach no utterance."""
    alarms = [(b, [s for s in segments if s.overlaps(b)]) for b in babble]
    return alarms, [s for _, here in alarms for s in here if not any(s.overlaps(u) for u in utts)]


def long_form_wer(utts: Sequence[Stretch], transcripts: Dict[str, Dict]) -> float:
    """The WER of the recordings' transcripts (``read_long_form``), each
    against its utterances' texts joined in time order."""
    recs = sorted(transcripts)
    refs = [" ".join(u.text for u in utts if u.rec == r) for r in recs]
    return rate(*word_errors(refs, [normalise(transcripts[r]["text"]) for r in recs]))


def variants_section(
    set_dir: str, long_dir: str, variants: Sequence[Tuple[str, str]], scales: Sequence[str]
) -> List[str]:
    """Markdown lines: per variant of the recordings (name, its long_dir
    with ``{scale}``) and scale, the long-form WER and babble false alarms
    beside the original's (``long_dir``) at that scale."""
    utts, babble = read_set(set_dir)
    lines = ["## Media variants", "",
             "The same recordings as users' media come (`local/synthgrid/media_variants.py`), decoded with VAD; "
             "the original's long-form WER at the same scale beside each.", "",
             "|variant|scale|long-form WER|original's|difference|babble false alarms|",
             "|---|---|---|---|---|---|"]
    for name, folder in variants:
        for scale in scales:
            _, transcripts, segments = read_long_form(utts, folder.format(scale=scale))
            wer = long_form_wer(utts, transcripts)
            original = long_form_wer(utts, read_long_form(utts, long_dir.format(scale=scale))[1])
            alarm_segments = false_alarms(utts, babble, segments)[1]
            lines.append(f"|{name}|{scale}|{wer:.1f}|{original:.1f}|{wer - original:+.1f}|{len(alarm_segments)} "
                         f"({sum(len(s.text.split()) for s in alarm_segments)} words)|")
    return lines + [""]


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def score_scale(
    scale: str,
    utts: Sequence[Stretch],
    babble: Sequence[Stretch],
    long_dir: str,
    clip_dir: str,
    tolerance: float = TOLERANCE,
) -> Tuple[Dict[str, float], List[str]]:
    """One scale's decodings -> its summary numbers and its report section
    (markdown lines)."""
    recs, transcripts, segments = read_long_form(utts, long_dir)
    clips = {u.key: read_transcript(os.path.join(clip_dir, f"{u.key}.json")) for u in utts}
    clip_text = {k: normalise(c["text"]) for k, c in clips.items()}
    alarms, alarm_segments = false_alarms(utts, babble, segments)

    lines = [f"## {scale}", "", "### Recordings", "",
             "|recording|seconds|utts|segments|words|long-form WER|without babble false alarms|clips WER|",
             "|---|---|---|---|---|---|---|---|"]
    long_refs, kept_hyps = [], []
    for r in recs:
        mine = [u for u in utts if u.rec == r]
        ref, hyp = " ".join(u.text for u in mine), normalise(transcripts[r]["text"])
        kept = " ".join(s.text for s in segments if s.rec == r and s not in alarm_segments and s.text)
        long_refs.append(ref)
        kept_hyps.append(kept)
        clip_errors, clip_words = word_errors([u.text for u in mine], [clip_text[u.key] for u in mine])
        count = sum(s.rec == r for s in segments)
        lines.append(f"|{r}|{transcripts[r]['duration']:.1f}|{len(mine)}|{count}|{len(ref.split())}|"
                     f"{rate(*word_errors([ref], [hyp])):.1f}|{rate(*word_errors([ref], [kept])):.1f}|"
                     f"{rate(clip_errors, clip_words):.1f}|")
    long_wer = long_form_wer(utts, transcripts)
    kept_wer = rate(*word_errors(long_refs, kept_hyps))
    clips_wer = rate(*word_errors([u.text for u in utts], [clip_text[u.key] for u in utts]))
    lines += [f"|all|{sum(t['duration'] for t in transcripts.values()):.1f}|{len(utts)}|{len(segments)}|"
              f"{sum(len(u.text.split()) for u in utts)}|{long_wer:.1f}|{kept_wer:.1f}|{clips_wer:.1f}|", ""]

    # Per segment: the utterances it overlaps are its reference.
    per_segment = []
    for s in segments:
        mine = [u for u in utts if s.overlaps(u)]
        ref = " ".join(u.text for u in mine)
        per_segment.append((s, mine, ref, *word_errors([ref], [s.text])))
    wrong = [p for p in per_segment if p[3]]
    segment_errors, segment_words = sum(p[3] for p in per_segment), sum(p[4] for p in per_segment)
    lines += ["### Segments with errors", "",
              f"{len(wrong)} of {len(per_segment)} segments have errors; per-segment WER over all segments "
              f"{rate(segment_errors, segment_words):.1f} (each against the utterances it overlaps).", ""]
    if wrong:
        lines += ["|recording|start|end|utterances|reference|hypothesis|errors|", "|---|---|---|---|---|---|---|"]
        lines += [f"|{s.rec}|{s.start:.2f}|{s.end:.2f}|{' '.join(u.key for u in mine) or '-'}|{_cell(ref)}|"
                  f"{_cell(s.text)}|{errors}/{words}|" for s, mine, ref, errors, words in wrong]
        lines.append("")

    found = boundaries(utts, segments)
    hits = sum(b.hit(tolerance) for b in found)
    located = [b for b in found if b.start_error is not None]
    start_mae = sum(abs(b.start_error) for b in located) / max(len(located), 1)
    end_mae = sum(abs(b.end_error) for b in located) / max(len(located), 1)
    lines += ["### VAD boundaries", "",
              f"{hits} of {len(found)} utterances ({rate(hits, len(found)):.1f} %) have segment boundaries within "
              f"{tolerance:g} s of the true speech; mean absolute error {start_mae:.3f} s at the start, "
              f"{end_mae:.3f} s at the end (segment minus truth: mean "
              f"{sum(b.start_error for b in located) / max(len(located), 1):+.3f} s, "
              f"{sum(b.end_error for b in located) / max(len(located), 1):+.3f} s); "
              f"{len(found) - len(located)} utterances overlap no segment.", ""]
    misses = [b for b in found if not b.hit(tolerance)]
    if misses:
        lines += ["|utterance|recording|true start|true end|start error|end error|", "|---|---|---|---|---|---|"]
        lines += [f"|{b.utt.key}|{b.utt.rec}|{b.utt.start:.2f}|{b.utt.end:.2f}|"
                  + ("no segment|-|" if b.start_error is None else f"{b.start_error:+.2f}|{b.end_error:+.2f}|")
                  for b in misses]
        lines.append("")

    alarm_words = sum(len(s.text.split()) for s in alarm_segments)
    lines += ["### Babble-only stretches", "",
              f"{len(alarm_segments)} segments inside babble alone (false alarms), {alarm_words} words; a segment "
              "reaching from babble into an utterance is listed but not counted.", "",
              "|stretch|recording|start|end|segments|text|", "|---|---|---|---|---|---|"]
    lines += [f"|{b.key}|{b.rec}|{b.start:.2f}|{b.end:.2f}|{len(here)}|{_cell(' / '.join(s.text for s in here))}|"
              for b, here in alarms]
    lines.append("")

    faceless = [u for u in utts if not u.face]
    audio_only = 0
    lines += ["### Face-absent utterances", "",
              "|utterance|reference|segments' modalities|long-form text|clip modalities|clip text|",
              "|---|---|---|---|---|---|"]
    for u in faceless:
        here = [s for s in segments if s.overlaps(u)]
        audio_only += bool(here) and all(s.modalities == ("audio",) for s in here)
        clip_modalities = sorted({m for s in clips[u.key]["segments"] for m in s["modalities"]})
        lines.append(f"|{u.key}|{u.text}|{' / '.join('+'.join(s.modalities) for s in here) or '-'}|"
                     f"{_cell(' / '.join(s.text for s in here))}|{'+'.join(clip_modalities) or '-'}|"
                     f"{_cell(clip_text[u.key])}|")
    note = f"{audio_only} of {len(faceless)} face-absent utterances decoded from the sound alone"
    if ScaleRequest.parse(scale).kind == FIXED and "video" in parse_scale(scale).modalities:
        # With the face in the picture, a scale that reads the lips should have had them.
        lost = [u.key for u in utts if u.face and any("video" not in s.modalities for s in segments if s.overlaps(u))]
        note += f"; {len(lost)} utterances with a face decoded without the lips" + "".join(f" {k}" for k in lost)
    lines += ["", note + ".", ""]

    summary = dict(utts=len(utts), long_wer=long_wer, kept_wer=kept_wer, clips_wer=clips_wer, gap=long_wer - clips_wer,
                   segment_wer=rate(segment_errors, segment_words), hits=rate(hits, len(found)),
                   start_mae=start_mae, end_mae=end_mae, alarms=len(alarm_segments), alarm_words=alarm_words,
                   faceless=len(faceless), audio_only=audio_only)
    return summary, lines


def report(
    set_dir: str,
    long_dir: str,
    clip_dir: str,
    scales: Sequence[str],
    tolerance: float = TOLERANCE,
    variants: Sequence[Tuple[str, str]] = (),
    variant_scales: Sequence[str] = (),
) -> str:
    """The markdown report of every scale's decodings (``{scale}`` in the
    folders is each scale), and of the media variants' (``variants_section``)."""
    utts, babble = read_set(set_dir)
    rows, sections = [], []
    for scale in scales:
        summary, lines = score_scale(scale, utts, babble, long_dir.format(scale=scale),
                                     clip_dir.format(scale=scale), tolerance)
        mark = lambda ok: "yes" if ok else "**no**"  # noqa: E731
        rows.append(
            f"|{scale}|{summary['utts']}|{summary['long_wer']:.1f}|{summary['kept_wer']:.1f}|"
            f"{summary['clips_wer']:.1f}|"
            f"{summary['gap']:+.1f}|{mark(summary['gap'] <= TARGET_WER_GAP)}|{summary['segment_wer']:.1f}|"
            f"{summary['hits']:.1f}|{mark(summary['hits'] >= TARGET_HITS)}|{summary['start_mae']:.2f}|"
            f"{summary['end_mae']:.2f}|{summary['alarms']} ({summary['alarm_words']} words)|"
            f"{summary['audio_only']}/{summary['faceless']}|"
        )
        sections += lines
    header = [
        f"# Long-form transcription: {set_dir}", "",
        f"{len({u.rec for u in utts})} recordings ({len(utts)} utterances, "
        f"{len(babble)} babble-only stretches, {sum(not u.face for u in utts)} utterances without face), "
        "decoded with VAD segmentation, beside the same utterances decoded as clips (`--vad false`). "
        f"Targets: long-form WER at most {TARGET_WER_GAP:g} point over the clips'; segment boundaries within "
        f"{tolerance:g} s of the true speech for at least {TARGET_HITS:g} % of utterances.", "",
        "|scale|utts|long-form WER|without babble false alarms|clips WER|gap|gap ok|per-segment WER|VAD hits %|"
        "hits ok|start MAE s|end MAE s|babble false alarms|face-absent from sound|",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if variants:
        sections += variants_section(set_dir, long_dir, variants, variant_scales)
    return "\n".join(header + rows + [""] + sections)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set_dir", required=True, help="the long-form set (segments, text, utt2face, babble)")
    parser.add_argument("--long_dir", required=True, help="the recordings' JSONs ({scale}: each scale)")
    parser.add_argument("--clip_dir", required=True, help="the clips' JSONs ({scale}: each scale)")
    parser.add_argument("--scales", nargs="+", required=True)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="seconds, for the VAD boundaries")
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("NAME", "LONG_DIR"),
                        help="a media variant's recordings' JSONs ({scale}: each of --variant_scales), "
                             "scored beside --long_dir's")
    parser.add_argument("--variant_scales", nargs="+", default=[])
    parser.add_argument("--out", help="the markdown report (also printed)")
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    text = report(args.set_dir, args.long_dir, args.clip_dir, args.scales, args.tolerance,
                  [tuple(v) for v in args.variant], args.variant_scales)
    if args.out:
        write_lines(args.out, text.splitlines())
    print(text)


if __name__ == "__main__":
    main()
