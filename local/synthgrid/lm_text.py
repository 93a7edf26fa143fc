"""Text-only GRID sentences for pre-training the stand-in LLM (stages 5-8).

A real LLM has read far more text than any AV corpus holds; this plays that
part: ``n`` sentences drawn from the grammar, as a Kaldi-style ``text`` file.

    python -m local.synthgrid.lm_text --out data/lm_text --n 20000
"""

import argparse
from pathlib import Path

from espnet_mtsk.fileio import write_lines
from local.synthgrid.grammar import random_sentence, transcript
from local.synthgrid.seeding import rng_for


def write_lm_text(out: Path, n: int, seed: int = 0) -> None:
    """Writes ``lm<index> <sentence>`` lines to ``out``, atomically."""
    rng = rng_for(seed, "lm_text")
    write_lines(str(out), [f"lm{i:06d} {transcript(random_sentence(rng))}" for i in range(n)])


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(cmd)
    write_lm_text(args.out, args.n, args.seed)


if __name__ == "__main__":
    main()
