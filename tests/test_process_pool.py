import gc

import av
import numpy as np

from espnet_mtsk.fileio import SAMPLE_RATE
from espnet_mtsk.process_pool import process_pool


def _filter_graphs() -> int:
    return sum(isinstance(o, av.filter.Graph) for o in gc.get_objects())


def _resampler_in_use() -> av.AudioResampler:
    """A resampler that has run: its ffmpeg filter graph holds slice threads."""
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 2205), np.float32), format="flt", layout="mono")
    frame.sample_rate = 22050
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    resampler.resample(frame)
    return resampler


def test_workers_hold_none_of_the_callers_filter_graphs():
    # A forked worker would hold this graph without its threads, and hang in
    # the collector that frees it.
    resampler = _resampler_in_use()
    assert _filter_graphs() >= 1
    with process_pool(2) as pool:
        counts = [pool.submit(_filter_graphs).result(timeout=120) for _ in range(4)]
    assert counts == [0, 0, 0, 0]
    del resampler  # alive, with its graph, until the workers have counted
