"""Named random streams, so that every draw depends only on the run seed and
what it is for (e.g. an utterance id), not on the order of the work."""

import zlib

import numpy as np


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """(seed, "video", "s03_0012") -> a generator private to that purpose.

    Keys are hashed with CRC-32 rather than ``hash``, which Python salts
    per process.
    """
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])
