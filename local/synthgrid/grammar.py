"""The GRID sentence grammar: six slots, 4 x 4 x 4 x 25 x 10 x 4 sentences.

A sentence is a tuple of six words; its transcript is the words joined by
spaces ("bin blue at f two now", letters as single lower-case letters) and
its espeak text is the same except for the letters espeak would not read as
letter names.
"""

import string
from typing import Sequence, Tuple

import numpy as np

COMMANDS = ("bin", "lay", "place", "set")
COLOURS = ("blue", "green", "red", "white")
PREPOSITIONS = ("at", "by", "in", "with")
LETTERS = tuple(c for c in string.ascii_lowercase if c != "w")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ADVERBS = ("again", "now", "please", "soon")
SLOTS = (COMMANDS, COLOURS, PREPOSITIONS, LETTERS, DIGITS, ADVERBS)

# espeak reads a lone "a" (any case) as the article /@/; the phoneme code
# makes it say the letter name /eI/. Every other letter, lower-case, comes out
# as its name in all English voices (checked with `espeak-ng -x`); "z" is
# "zee" in en-us voices and "zed" in the British ones.
_LETTER_TEXT = {"a": "[['eI]]"}

Sentence = Tuple[str, str, str, str, str, str]


def random_sentence(rng: np.random.Generator) -> Sentence:
    """Draws each slot uniformly: -> six words."""
    return tuple(slot[rng.integers(len(slot))] for slot in SLOTS)


def transcript(words: Sequence[str]) -> str:
    """Six words -> the reference text, e.g. "bin blue at f two now"."""
    return " ".join(words)


def espeak_text(words: Sequence[str]) -> str:
    """Six words -> the text given to espeak (letters spelled so that espeak
    says the letter's name)."""
    return " ".join(_LETTER_TEXT.get(w, w) for w in words)
