#!/usr/bin/env python3
"""Stages 12-13: the sets of one decoding call as one list of distinct
inputs, decoded by one launch of the decoding jobs, and the results handed
back to every set under its own utterance ids.

A decoding process spends about 12 s importing ESPnet and loading the
model before its first utterance; a launch per set paid that for each of
the recipe's nine sets. And SynthGRID's sets share inputs: ``test_noisy``
is ``test_clean`` and the ``test_snr*`` sets together, ``test_mixed`` one
of each of their utterances, ``dev``'s utterances are among
``dev_noisy``'s. An utterance is the same input as another when its
``wav.scp`` and ``video.scp`` entries are; decoding is deterministic, so
one decoding serves all the sets that hold it.

    python -m local.decode_sets plan --logdir <decode dir>/logdir.scales \\
        dump/raw/dev dump/raw/test_clean ...

writes to the logdir ``wav.scp`` and ``video.scp`` (those the sets have)
of the distinct inputs, each under ``<set>:<utt>`` of the first set that
holds it, ``keys`` (those ids) and ``members`` (``<set> <utt> <id>`` for
every utterance of every set). After the jobs have written
``<logdir>/output.<n>/<scale>/1best_recog/<file>``,

    python -m local.decode_sets gather --logdir <decode dir>/logdir.scales \\
        --out_dir <decode dir> --scales a4 a4_v3

writes each set's ``<out_dir>/<set>/<scale>/1best_recog/<file>`` (its
utterances' lines under their own ids, sorted; a file none of them has is
not written) and copies the jobs' ``decoding.json`` to ``<out_dir>/<set>/``.
"""

import argparse
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.fileio import write_lines

LISTS = ("wav.scp", "video.scp")


def plan(data_dirs: List[Path], logdir: Path) -> int:
    """Writes the distinct inputs, ``keys`` and ``members``; returns the
    number of distinct inputs. Every utterance of ``text`` maps to exactly
    one id, and two utterances share an id iff their entries of every list
    are equal (absent counting as equal)."""
    names = [d.name for d in data_dirs]
    if len(set(names)) != len(names):
        raise ValueError(f"sets of one decoding need distinct names: {names}")
    present = [n for n in LISTS if any((d / n).exists() for d in data_dirs)]
    ids: Dict[Tuple[Optional[str], ...], str] = {}
    entries: Dict[str, Dict[str, str]] = {n: {} for n in present}
    members = []
    for data_dir in data_dirs:
        lists = {n: read_2columns_text(str(data_dir / n)) if (data_dir / n).exists() else {} for n in present}
        for utt in sorted(read_2columns_text(str(data_dir / "text"))):
            inputs = tuple(lists[n].get(utt) for n in present)
            if inputs not in ids:
                ids[inputs] = f"{data_dir.name}:{utt}"
                for n, entry in zip(present, inputs):
                    if entry is None:
                        raise ValueError(f"{data_dir}: {utt} is in text but not in {n}")
                    entries[n][ids[inputs]] = entry
            members.append(f"{data_dir.name} {utt} {ids[inputs]}")
    logdir.mkdir(parents=True, exist_ok=True)
    for n in present:
        write_lines(logdir / n, [f"{k} {v}" for k, v in entries[n].items()])
    write_lines(logdir / "keys", list(ids.values()))
    write_lines(logdir / "members", members)
    return len(ids)


def _job_outputs(logdir: Path, scale: str) -> Dict[str, Dict[str, str]]:
    """{file name: {id: value}} over every job's output of ``scale``."""
    tables: Dict[str, Dict[str, str]] = {}
    for recog in sorted(logdir.glob(f"output.*/{scale}/1best_recog")):
        for f in recog.iterdir():
            tables.setdefault(f.name, {}).update(read_2columns_text(str(f)))
    return tables


def gather(logdir: Path, out_dir: Path, scales: List[str]) -> None:
    """Writes every set's results under its own ids; a ValueError naming
    the logdir when an utterance has no decoded ``text`` at some scale."""
    members: Dict[str, List[Tuple[str, str]]] = {}
    for line in (logdir / "members").read_text().splitlines():
        dset, utt, uid = line.split()
        members.setdefault(dset, []).append((utt, uid))
    for scale in scales:
        tables = _job_outputs(logdir, scale)
        for dset, utts in members.items():
            missing = [uid for _, uid in utts if uid not in tables.get("text", {})]
            if missing:
                raise ValueError(f"{logdir}: no decoded text at scale {scale} for {len(missing)} "
                                 f"utterances of {dset}, e.g. {missing[0]}")
            recog = out_dir / dset / scale / "1best_recog"
            shutil.rmtree(recog, ignore_errors=True)
            recog.mkdir(parents=True)
            for name, table in tables.items():
                lines = [f"{utt} {table[uid]}" for utt, uid in sorted(utts) if uid in table]
                if lines:
                    write_lines(recog / name, lines)
    settings = sorted(logdir.glob("output.*/decoding.json"))
    for dset in members:
        if settings:
            shutil.copy(settings[0], out_dir / dset / "decoding.json")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    p_plan = sub.add_parser("plan", help="the distinct inputs of the sets")
    p_plan.add_argument("--logdir", type=Path, required=True)
    p_plan.add_argument("data_dirs", type=Path, nargs="+", help="the sets, in the order they are decoded")
    p_gather = sub.add_parser("gather", help="each set's results from the jobs' outputs")
    p_gather.add_argument("--logdir", type=Path, required=True)
    p_gather.add_argument("--out_dir", type=Path, required=True, help="the decoding dir, a folder per set")
    p_gather.add_argument("--scales", nargs="+", required=True)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.command == "plan":
        n = plan(args.data_dirs, args.logdir)
        print(f"{n} distinct inputs in {' '.join(d.name for d in args.data_dirs)}")
    else:
        gather(args.logdir, args.out_dir, args.scales)
    return 0


if __name__ == "__main__":
    sys.exit(main())
