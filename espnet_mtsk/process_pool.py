"""Worker processes that start clean.

A forked worker inherits the parent's memory but none of its threads. Objects
that own threads then break in the child: a PyAV resampler leaves its ffmpeg
filter graph (and the graph's slice threads) to Python's cyclic garbage
collector, and a child that collects an inherited graph waits forever to join
threads that do not exist there (seen as a hung SynthGRID preparation inside
the test process); MediaPipe graphs and OpenMP pools are no safer. Workers
here fork from a server process that has only imported modules, so they hold
nothing of the caller's.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Optional, Sequence


def process_pool(
    nj: int,
    preload: Sequence[str] = (),
    initializer: Optional[Callable] = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """``nj`` workers forked from a clean server process.

    ``preload`` names modules the server imports once, so that each worker
    starts with them (torch, ESPnet) instead of importing them again; it
    takes effect only for the first pool of a process, whose server the
    later pools share. Submitted functions and their arguments are pickled,
    so they must be importable by module and name.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(nj, context, initializer, initargs)
