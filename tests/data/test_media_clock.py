"""Sound and picture on one clock: stream start times, variable frame rates."""

import numpy as np
import pytest

from espnet_mtsk.data.video import FrameStream, frames_on_clock, write_video_mp4
from espnet_mtsk.fileio import decode_audio, media_streams

av = pytest.importorskip("av")
SECONDS = 1.6


def tone(seconds=SECONDS):
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 4)).astype(np.float32)


def write(path, audio_start=0.0, drop_every=0, frames=50, first_frame=0, seconds=SECONDS):
    """An mp4 of ``frames`` 25 fps frames from frame ``first_frame`` on,
    frame i a flat grey of level 5 i (dropped: every ``drop_every``-th, its
    predecessor staying on screen), and an AAC tone of ``seconds`` whose
    stream starts at ``audio_start`` s."""
    kept = [i for i in range(first_frame, first_frame + frames) if not drop_every or i % drop_every != drop_every - 1]
    write_video_mp4(str(path), (np.full((64, 64), 5 * i, np.uint8) for i in kept), audio=tone(seconds),
                    frame_times=[i / 25 for i in kept], audio_start=audio_start)
    return str(path)


def levels(frames):
    return [None if f is None else int(round(f.mean() / 5)) for f in frames]


def test_a_late_sound_track_keeps_its_place(tmp_path):
    aligned, late = write(tmp_path / "aligned.mp4"), write(tmp_path / "late.mp4", audio_start=0.4)
    sound, _ = decode_audio(aligned)
    shifted, _ = decode_audio(late)
    # The sound written from 0.4 s is there on the clock: silence (the
    # encoder's priming, at most a whisper) before it, then the same samples.
    lead = int(0.4 * 16000)
    assert np.abs(shifted[:lead]).max() < 0.01 * np.abs(sound).max()
    np.testing.assert_array_equal(shifted[lead : lead + len(sound)], sound)
    audio_end, video_end = media_streams(late)
    assert video_end == pytest.approx(2.0) and audio_end == pytest.approx(len(shifted) / 16000, abs=0.07)
    assert media_streams(aligned)[0] == pytest.approx(len(sound) / 16000, abs=0.07)


def test_frames_are_the_ones_shown_at_their_time(tmp_path):
    aligned, dropped = write(tmp_path / "aligned.mp4"), write(tmp_path / "vfr.mp4", drop_every=25)
    stream = FrameStream(aligned)
    assert levels(stream.frames(0, 50)) == list(range(50))
    assert levels(stream.frames(50, 2)) == [None, None]  # the picture has ended
    stream.close()
    # Frames 24 and 49 are missing: the one before stays on screen, and
    # every other frame keeps its time (counting frames would shift them).
    stream = FrameStream(dropped)
    want = [i - 1 if i in (24, 49) else i for i in range(50)]
    assert levels(stream.frames(0, 30)) == want[:30]
    assert levels(stream.frames(40, 10)) == want[40:]
    stream.close()
    assert levels(frames_on_clock(dropped)) == want[: len(frames_on_clock(dropped))]


def test_a_picture_that_starts_late_is_not_shown_before(tmp_path):
    late_picture = write(tmp_path / "late_picture.mp4", frames=10, first_frame=10, seconds=0.8)  # from 0.4 s
    with av.open(late_picture) as container:
        origin = min(float(s.start_time * s.time_base) for s in container.streams)
        video_start = float(container.streams.video[0].start_time * container.streams.video[0].time_base) - origin
    first = int(np.ceil(video_start * 25 - 1e-3))
    stream = FrameStream(late_picture)
    got = levels(stream.frames(0, first + 10))
    stream.close()
    assert got == [None] * first + list(range(10, 20))
    # A clip's crops start with the first frame where none was shown yet.
    assert levels(frames_on_clock(late_picture))[: first + 1] == [10] * (first + 1)
