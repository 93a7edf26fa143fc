"""Per-scale scoring as ESPnet's ``asr.sh`` does it: sclite (SCTK) on trn
files, WER and CER, ESPnet-style result files, RESULTS.md (its plot:
``espnet_mtsk.reporting.plot``).

Decoding writes ``<decode_dir>/<test_set>/<scale>/1best_recog/`` with the
files ``text``, ``num_tokens``, ``speech_seconds`` and ``decode_seconds``
(one ``utt value`` line each); scoring reads them beside the test set's
reference ``text``. Each decoding gets ``score_wer/`` and ``score_cer/`` as in
ESPnet: ``ref.trn`` and ``hyp.trn`` in sclite's trn format (characters
separated by spaces, ``<space>`` between words, for CER) and sclite's
``result.txt`` (``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout``),
whose counts RESULTS.md reports; ``result.md`` lists them with the wrong
sentences. The Debian package ``sctk`` provides sclite
(``tools/install.sh`` installs it). ``count_errors`` (jiwer's alignment)
serves the policy's per-utterance counts.
"""

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Sequence

import jiwer
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.decoding.budget import ScaleCost

COUNT_COLUMNS = "|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"
_SCLITE_PLACES = ("/usr/lib/sctk/bin/sclite",)
COLUMNS = "|dataset|scale" + COUNT_COLUMNS + "tokens/s|RTF|"


@dataclass
class Errors:
    """One decoding's error counts in one unit (words, or characters for CER);
    ``ref`` is the number of reference units (sclite's "Wrd")."""

    snt: int
    ref: int
    corr: int
    sub: int
    dele: int
    ins: int
    sent_err: int

    @property
    def wrong(self) -> int:
        """Substitutions, deletions and insertions."""
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        return 100.0 * self.wrong / max(self.ref, 1)

    def cells(self) -> str:
        pct = lambda n: f"{100.0 * n / max(self.ref, 1):.1f}"  # noqa: E731
        return (
            f"{self.snt}|{self.ref}|{pct(self.corr)}|{pct(self.sub)}|{pct(self.dele)}|"
            f"{pct(self.ins)}|{self.rate:.1f}|{100.0 * self.sent_err / max(self.snt, 1):.1f}"
        )


@dataclass
class Score:
    dataset: str
    scale: str
    words: Errors
    chars: Errors
    tokens_per_sec: float
    rtf: float

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    def row(self, unit: str = "words") -> str:
        """A RESULTS.md row; ``unit``: ``words`` (WER) or ``chars`` (CER)."""
        return (
            f"|{self.dataset}|{self.scale}|{getattr(self, unit).cells()}|"
            f"{self.tokens_per_sec:.1f}|{self.rtf:.3f}|"
        )


def normalise(text: str) -> str:
    """What WER compares: lower case, single spaces."""
    return " ".join(text.lower().split())


def characters(text: str) -> str:
    """ESPnet's CER units: one token per character, ``<space>`` between words."""
    return " <space> ".join(" ".join(word) for word in text.split())


def count_errors(refs: List[str], hyps: List[str]) -> Errors:
    """jiwer's alignment of ``refs`` and ``hyps`` (lists of space-separated units) as ``Errors``."""
    out = jiwer.process_words(refs, hyps)
    return Errors(
        snt=len(refs),
        ref=out.hits + out.substitutions + out.deletions,
        corr=out.hits,
        sub=out.substitutions,
        dele=out.deletions,
        ins=out.insertions,
        sent_err=sum(r != h for r, h in zip(refs, hyps)),
    )


def sclite_path() -> str:
    """The sclite program: on PATH, or where Debian's ``sctk`` puts it; a
    FileNotFoundError naming the package when it is in neither place."""
    found = shutil.which("sclite") or next((p for p in _SCLITE_PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        raise FileNotFoundError(
            "sclite not found (on PATH or in /usr/lib/sctk/bin): install the Debian package "
            "sctk (apt-get install sctk; tools/install.sh does), which ESPnet's scoring uses"
        )
    return found


def sclite(out_dir: Path) -> Errors:
    """Runs sclite on ``out_dir``'s ``ref.trn`` and ``hyp.trn`` as ESPnet's
    ``asr.sh`` does, keeps its report as ``result.txt`` and returns the
    counts of its ``Sum`` row."""
    with open(out_dir / "result.txt", "w") as report:
        subprocess.run([sclite_path(), "-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm", "-o", "all",
                        "stdout"], cwd=out_dir, stdout=report, stderr=subprocess.DEVNULL, check=True)
    for line in (out_dir / "result.txt").read_text().splitlines():
        cells = line.strip().strip("|").split("|")
        if len(cells) == 3 and cells[0].strip() == "Sum":
            snt, ref = map(int, cells[1].split())
            corr, sub, dele, ins, _, sent_err = map(int, cells[2].split())
            return Errors(snt=snt, ref=ref, corr=corr, sub=sub, dele=dele, ins=ins, sent_err=sent_err)
    raise ValueError(f"{out_dir / 'result.txt'}: no 'Sum' row of counts in sclite's report")


def _write_score_dir(out_dir: Path, keys: List[str], refs: List[str], hyps: List[str], unit: str) -> Errors:
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ref.trn").write_text("".join(f"{r}\t({k})\n" for k, r in zip(keys, refs)))
    (out_dir / "hyp.trn").write_text("".join(f"{h}\t({k})\n" for k, h in zip(keys, hyps)))
    errors = sclite(out_dir)
    lines = [COUNT_COLUMNS, "|---" * (COUNT_COLUMNS.count("|") - 1) + "|", f"|{errors.cells()}|", ""]
    lines += [f"{k}\tREF: {r}\n{k}\tHYP: {h}" for k, r, h in zip(keys, refs, hyps) if r != h]
    (out_dir / "result.md").write_text(f"# {unit} errors (sclite)\n\n" + "\n".join(lines) + "\n")
    return errors


def score_dir(ref_file: Path, decode_dir: Path, dataset: str, scale: str) -> Score:
    """Scores one decoding (WER and CER); writes ``score_wer/`` and ``score_cer/``.

    Every reference utterance must have a hypothesis: a missing one is an
    error naming it (an empty hypothesis is a valid, wrong answer).
    """
    refs = {k: normalise(v) for k, v in read_2columns_text(ref_file).items()}
    best = decode_dir / "1best_recog"
    hyps = {k: normalise(v) for k, v in read_2columns_text(best / "text").items()}
    missing = sorted(set(refs) - set(hyps))
    if missing:
        raise ValueError(
            f"{best / 'text'} lacks {len(missing)} utterances of {ref_file}: "
            f"{', '.join(missing[:5])}"
        )
    keys = sorted(refs)
    units = {}
    for unit, split in (("words", lambda t: t), ("chars", characters)):
        ref_units = [split(refs[k]) for k in keys]
        hyp_units = [split(hyps[k]) for k in keys]
        name = "score_wer" if unit == "words" else "score_cer"
        units[unit] = _write_score_dir(decode_dir / name, keys, ref_units, hyp_units, unit)
    numbers = {
        name: {k: float(v) for k, v in read_2columns_text(best / name).items()}
        for name in ("num_tokens", "speech_seconds", "decode_seconds")
    }
    seconds = sum(numbers["speech_seconds"][k] for k in keys)
    return Score(
        dataset=dataset,
        scale=scale,
        words=units["words"],
        chars=units["chars"],
        tokens_per_sec=sum(numbers["num_tokens"][k] for k in keys) / seconds,
        rtf=sum(numbers["decode_seconds"][k] for k in keys) / seconds,
    )


def results_markdown(scores: Sequence[Score], title: str) -> str:
    """The RESULTS.md tables (WER, then CER, as in ESPnet): a row per (test set, scale)."""
    rule = "|---" * (COLUMNS.count("|") - 1) + "|"
    lines = [f"# {title}", ""]
    for heading, unit in (("WER", "words"), ("CER", "chars")):
        lines += [f"## {heading}", "", COLUMNS, rule] + [s.row(unit) for s in scores] + [""]
    lines += [
        "tokens/s: audio-visual tokens the LLM reads per second of speech; "
        "RTF: decoding wall time over speech duration.",
        "",
    ]
    return "\n".join(lines)


def write_scale_table(scores: Sequence[Score], path: Path, dataset: str) -> None:
    """Writes the scale table (``espnet_mtsk.decoding.budget``'s input) from
    the scores of ``dataset``."""
    rows = [
        ScaleCost(s.scale, round(s.wer, 2), round(s.tokens_per_sec, 2), round(s.rtf, 4))
        for s in scores
        if s.dataset == dataset
    ]
    if not rows:
        raise ValueError(f"no scores for '{dataset}' to build a scale table from")
    table = {"dataset": dataset, "scales": [asdict(r) for r in rows]}
    Path(path).write_text(json.dumps(table, indent=2) + "\n")
