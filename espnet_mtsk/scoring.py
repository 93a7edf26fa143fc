"""Per-scale scoring: WER with jiwer, ESPnet-style result files, RESULTS.md.

Decoding writes ``<decode_dir>/<test_set>/<scale>/1best_recog/`` with the
files ``text``, ``num_tokens``, ``speech_seconds`` and ``decode_seconds``
(one ``utt value`` line each); scoring reads them beside the test set's
reference ``text``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import jiwer
from espnet2.fileio.read_text import read_2columns_text

COLUMNS = "|dataset|scale|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|tokens/s|RTF|"


@dataclass
class Score:
    dataset: str
    scale: str
    snt: int
    wrd: int
    corr: int
    sub: int
    dele: int
    ins: int
    sent_err: int
    tokens_per_sec: float
    rtf: float

    @property
    def wer(self) -> float:
        return 100.0 * (self.sub + self.dele + self.ins) / max(self.wrd, 1)

    def row(self) -> str:
        pct = lambda n: f"{100.0 * n / max(self.wrd, 1):.1f}"  # noqa: E731
        return (
            f"|{self.dataset}|{self.scale}|{self.snt}|{self.wrd}|{pct(self.corr)}|"
            f"{pct(self.sub)}|{pct(self.dele)}|{pct(self.ins)}|{self.wer:.1f}|"
            f"{100.0 * self.sent_err / max(self.snt, 1):.1f}|"
            f"{self.tokens_per_sec:.1f}|{self.rtf:.3f}|"
        )


def normalise(text: str) -> str:
    """What WER compares: lower case, single spaces."""
    return " ".join(text.lower().split())


def score_dir(ref_file: Path, decode_dir: Path, dataset: str, scale: str) -> Score:
    """Scores one decoding; writes ``score_wer/{ref.trn,hyp.trn,result.txt}``.

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
    out = jiwer.process_words([refs[k] for k in keys], [hyps[k] for k in keys])
    numbers = {
        name: {k: float(v) for k, v in read_2columns_text(best / name).items()}
        for name in ("num_tokens", "speech_seconds", "decode_seconds")
    }
    seconds = sum(numbers["speech_seconds"][k] for k in keys)
    score = Score(
        dataset=dataset,
        scale=scale,
        snt=len(keys),
        wrd=out.hits + out.substitutions + out.deletions,
        corr=out.hits,
        sub=out.substitutions,
        dele=out.deletions,
        ins=out.insertions,
        sent_err=sum(refs[k] != hyps[k] for k in keys),
        tokens_per_sec=sum(numbers["num_tokens"][k] for k in keys) / seconds,
        rtf=sum(numbers["decode_seconds"][k] for k in keys) / seconds,
    )
    wer_dir = decode_dir / "score_wer"
    wer_dir.mkdir(exist_ok=True)
    (wer_dir / "ref.trn").write_text("".join(f"{refs[k]}\t({k})\n" for k in keys))
    (wer_dir / "hyp.trn").write_text("".join(f"{hyps[k]}\t({k})\n" for k in keys))
    lines = [COLUMNS, "|---" * (COLUMNS.count("|") - 1) + "|", score.row(), ""]
    lines += [f"{k}\tREF: {refs[k]}\n{k}\tHYP: {hyps[k]}" for k in keys if refs[k] != hyps[k]]
    (wer_dir / "result.txt").write_text("\n".join(lines) + "\n")
    return score


def results_markdown(scores: Sequence[Score], title: str) -> str:
    """The RESULTS.md table: one row per (test set, scale)."""
    lines = [f"# {title}", "", "## WER", "", COLUMNS, "|---" * (COLUMNS.count("|") - 1) + "|"]
    lines += [s.row() for s in scores]
    lines += [
        "",
        "tokens/s: audio-visual tokens the LLM reads per second of speech; "
        "RTF: decoding wall time over speech duration.",
        "",
    ]
    return "\n".join(lines)


def plot_pareto(scores: Sequence[Score], png: Path) -> None:
    """WER against LLM tokens per second, one line per test set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_set: Dict[str, List[Score]] = {}
    for s in scores:
        by_set.setdefault(s.dataset, []).append(s)
    fig, ax = plt.subplots(figsize=(6, 4))
    for dataset, items in by_set.items():
        items = sorted(items, key=lambda s: s.tokens_per_sec)
        ax.plot([s.tokens_per_sec for s in items], [s.wer for s in items], "o-", label=dataset)
        for s in items:
            ax.annotate(s.scale, (s.tokens_per_sec, s.wer), fontsize=7)
    ax.set_xlabel("LLM audio-visual tokens per second of speech")
    ax.set_ylabel("WER (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
