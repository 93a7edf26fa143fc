#!/usr/bin/env python3
"""Stages 12-13: a set's utterances that an earlier set of the same
decoding already holds (the same audio and video) take that set's results
instead of being decoded again.

SynthGRID's ``test_noisy`` is ``test_clean`` and the ``test_snr*`` sets
together, ``test_mixed`` one of each of their utterances, and ``dev``'s
utterances are among ``dev_noisy``'s: a third of the utterances decoded at
every scale would be decoded twice. Decoding is deterministic, so the
results are those a second decoding gives.

    python -m local.reuse_decodings --data_dir dump/raw/test_noisy \\
        --out_dir <decode dir>/test_noisy/logdir --scales a4 a4_v3 \\
        --earlier dump/raw/test_clean=<decode dir>/test_clean ...

writes, for each scale, the reused utterances' lines of every
``1best_recog`` file of the earlier decoding to
``<out_dir>/output.0/<scale>/1best_recog/`` (the first of the decoding jobs'
output folders) and the ``text`` lines of the others, the ones left to
decode, to ``<out_dir>/todo``. An utterance is the same input as an
earlier one when its ``wav.scp`` and ``video.scp`` entries are.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.fileio import write_lines

Inputs = Tuple[Optional[str], Optional[str]]


def inputs(data_dir: Path) -> Dict[str, Inputs]:
    """{utt: (its wav.scp entry, its video.scp entry)}, None for a list the
    data dir lacks; the utterances are those of ``text``."""
    lists = [read_2columns_text(str(data_dir / n)) if (data_dir / n).exists() else {} for n in ("wav.scp", "video.scp")]
    return {utt: (lists[0].get(utt), lists[1].get(utt)) for utt in read_2columns_text(str(data_dir / "text"))}


def sources(data_dir: Path, earlier: List[Tuple[Path, Path]]) -> Dict[str, Tuple[Path, str]]:
    """{utt of data_dir: (an earlier decoding dir, its utterance id)} for the
    utterances whose inputs an earlier set has; the first such set serves."""
    seen: Dict[Inputs, Tuple[Path, str]] = {}
    for earlier_data, decode_dir in earlier:
        for utt, key in inputs(earlier_data).items():
            seen.setdefault(key, (decode_dir, utt))
    return {utt: seen[key] for utt, key in inputs(data_dir).items() if key in seen}


def reuse(data_dir: Path, out_dir: Path, scales: List[str], earlier: List[Tuple[Path, Path]]) -> int:
    """Writes the reused results and the todo list; returns how many were reused."""
    found = sources(data_dir, earlier)
    for scale in scales:
        recog = out_dir / "output.0" / scale / "1best_recog"
        recog.mkdir(parents=True, exist_ok=True)
        tables: Dict[Path, Dict[str, Dict[str, str]]] = {}
        for decode_dir, _ in found.values():
            if decode_dir not in tables:
                done = decode_dir / scale / "1best_recog"
                tables[decode_dir] = {f.name: read_2columns_text(str(f)) for f in done.iterdir()}
        names = sorted({name for table in tables.values() for name in table})
        for name in names:
            write_lines(recog / name, [f"{utt} {tables[d][name][src]}" for utt, (d, src) in sorted(found.items())])
    with open(data_dir / "text", encoding="utf-8") as f:
        write_lines(out_dir / "todo", [line.rstrip("\n") for line in f if line.split(" ", 1)[0] not in found])
    return len(found)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", type=Path, required=True, help="the set to decode")
    p.add_argument("--out_dir", type=Path, required=True, help="its decoding's logdir")
    p.add_argument("--scales", nargs="+", required=True)
    p.add_argument("--earlier", nargs="*", default=[], help="<data dir>=<its decoding dir>, sets decoded alike")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    earlier = [tuple(map(Path, pair.split("=", 1))) for pair in args.earlier]
    reused = reuse(args.data_dir, args.out_dir, args.scales, earlier)
    print(f"{args.data_dir}: {reused} utterances' results reused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
