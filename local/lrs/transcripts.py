"""LRS2 / LRS3 transcripts: the corpus ``.txt`` files, their normalisation,
and the planning of long clips into pieces along their word timings."""

import math
import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from espnet_mtsk.fileio import VIDEO_FPS

MAX_DURATION = 16.0


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


_MARKER = re.compile(r"\{[^}]*\}")


def normalize_text(text: str) -> str:
    """Drops ``{...}`` markers, lower-cases, collapses white space."""
    return " ".join(_MARKER.sub(" ", text).lower().split())


def read_lrs_txt(path: str) -> Tuple[str, List[Word]]:
    """An LRS2/LRS3 ``.txt`` -> (the ``Text:`` line as is, word timings).

    Raises ValueError naming the file when the first line is not ``Text:``
    or a timing line is malformed.
    """
    with open(path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith("Text:"):
        raise ValueError(f"{path}: first line is not 'Text:  ...'")
    text = lines[0][len("Text:") :].strip()
    words: List[Word] = []
    timed = False
    for n, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not timed:
            timed = fields[:3] == ["WORD", "START", "END"]
            continue
        if not fields:
            continue
        try:
            words.append(Word(fields[0], float(fields[1]), float(fields[2])))
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}:{n}: bad word timing line {line!r}") from e
    return text, words


@dataclass(frozen=True)
class Piece:
    """A stretch of a clip in seconds and its transcript; ``whole``: the
    whole clip, uncut."""

    start: float
    end: float
    text: str
    whole: bool = False


def plan_pieces(
    text: str, words: Sequence[Word], duration: float, max_duration: float = MAX_DURATION
) -> List[Piece]:
    """Cuts a clip into pieces of at most ``max_duration`` seconds.

    A clip no longer than that stays whole (its ``Text:`` transcript).
    Otherwise words go greedily into a piece while the piece, from its first
    word's start (0 for the first piece) to its last word's end, fits; a
    single word longer than the limit is a piece of its own. Raises
    ValueError for a long clip without word timings.
    """
    if duration <= max_duration + 1e-6:
        return [Piece(0.0, duration, text, whole=True)]
    if not words:
        raise ValueError(f"{duration:.2f} s > {max_duration:g} s and no word timings to cut it")
    pieces: List[Piece] = []
    current: List[Word] = []
    start = 0.0
    for word in words:
        if current and word.end - start > max_duration:
            pieces.append(Piece(start, current[-1].end, " ".join(w.word for w in current)))
            start, current = word.start, []
        current.append(word)
    pieces.append(Piece(start, current[-1].end, " ".join(w.word for w in current)))
    return pieces


def frame_span(piece: Piece) -> Tuple[int, int]:
    """A piece's video frames [first, last + 1): start rounded down, end up."""
    first = int(math.floor(piece.start * VIDEO_FPS + 1e-6))
    last = int(math.ceil(piece.end * VIDEO_FPS - 1e-6))
    return first, max(last, first + 1)
