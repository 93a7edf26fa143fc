"""The ``video`` data type: a Kaldi-style ``video.scp`` read like ``wav.scp``.

Each line is ``utt_id path``; the path is a ``.npy`` array (T, H, W) or any
video file PyAV decodes (read as grayscale). Frames come back as float32
(T, H, W) with raw pixel values 0..255; the video encoder normalises them.
Importing this module registers the type in ESPnet's ``DATA_TYPES``.
"""

import fractions
import itertools
import logging
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text
from typeguard import typechecked

from espnet_mtsk.data.scp import ScpMapping, register_data_type
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, atomic_path, clock_origin, to_pcm16


def read_video(path: str, pix_fmt: str = "gray") -> Tuple[np.ndarray, float]:
    """A video file -> frames and its frame rate.

    Frames are uint8 (T, H, W) grayscale, or (T, H, W, 3) with
    ``pix_fmt="rgb24"``.
    """
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [f.to_ndarray(format=pix_fmt) for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as e:
        raise ValueError(f"{path}: cannot decode video ({e})") from e
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames), fps


class FrameStream:
    """A video file's frames in order, taken as a 25 fps stream on the
    file's clock (``fileio.clock_origin``): output frame ``j`` is the source
    frame shown at ``j / 25`` s, the last whose time stamp is not later, so
    a picture that starts late, a variable frame rate and dropped frames
    keep their place beside the sound. None before the picture's first
    frame and after its last one has been shown for a frame's time."""

    def __init__(self, path: str):
        import av

        self.path = path
        try:
            self._container = av.open(path)
            stream = self._container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as e:
            raise ValueError(f"{path}: cannot decode video ({e})") from e
        stream.thread_type = "AUTO"
        self.fps = float(stream.average_rate or stream.guessed_rate or 0)
        self.decoded = 0  # source frames read so far
        # How long the last frame stays on screen.
        self._last_shown = 1.0 / self.fps if self.fps > 0 else 1.0 / VIDEO_FPS
        self._origin = clock_origin(self._container)
        self._frames = self._container.decode(stream)
        self._shown = None  # (time, frame) on screen at the last time asked
        self._next = self._read()

    def _read(self):
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.path}: cannot decode video ({e})") from e
        self.decoded += 1
        return float(frame.time) - self._origin, frame

    def frames(self, first: int, count: int) -> Iterator[Optional[np.ndarray]]:
        """RGB frames (H, W, 3) uint8 for 25 fps indices ``first`` ..
        ``first + count - 1`` (None where no frame is shown). Indices must
        not go back in time between calls."""
        for j in range(first, first + count):
            # Half a millisecond of slack: a 25 fps frame's stamp in a
            # coarse time base may round a hair past its grid time.
            t = j / VIDEO_FPS + 5e-4
            while self._next is not None and self._next[0] <= t:
                self._shown, self._next = self._next, self._read()
            if self._shown is None or (self._next is None and t >= self._shown[0] + self._last_shown):
                yield None
            else:
                yield self._shown[1].to_ndarray(format="rgb24")

    def close(self) -> None:
        self._container.close()


def frames_on_clock(path: str) -> np.ndarray:
    """A video file's picture as RGB frames (T, H, W, 3) uint8 at 25 fps on
    the file's clock (``FrameStream``), T = the picture's end time x 25;
    where no frame is shown yet (a picture that starts late) the first
    frame stands. Raises ValueError naming the file when it has no frame."""
    from espnet_mtsk.fileio import media_streams

    stream = FrameStream(path)
    try:
        _, end = media_streams(path)
        frames = list(stream.frames(0, max(1, int(round((end or 0.0) * VIDEO_FPS)))))
    finally:
        stream.close()
    shown = [i for i, f in enumerate(frames) if f is not None]
    if not shown:
        raise ValueError(f"{path}: no video frames")
    if abs(stream.fps - VIDEO_FPS) > 0.01 or stream.decoded != len(frames):
        logging.info(f"{path}: {stream.fps:g} fps -> 25 fps ({stream.decoded} -> {len(frames)} frames)")
    nearest = np.searchsorted(shown, np.arange(len(frames))).clip(max=len(shown) - 1)
    return np.stack([frames[shown[i]] for i in nearest])


class VideoScpReader(ScpMapping[str]):
    """``video.scp`` -> lazily loaded float32 arrays (T, H, W), one per utt.

    Errors name the utterance and the file: an id not in the scp (KeyError),
    a missing file (FileNotFoundError), an unreadable, empty or mis-shaped
    file, or a video whose frame rate is not 25 fps (ValueError).
    """

    @typechecked
    def __init__(self, fname: str):
        super().__init__(fname, read_2columns_text(fname))

    def __getitem__(self, key: str) -> np.ndarray:
        path = self.entry(key)
        if not Path(path).exists():
            raise FileNotFoundError(f"{key}: video file {path} not found")
        try:
            if path.endswith(".npy"):
                frames = np.load(path)
            else:
                frames, fps = read_video(path)
                if abs(fps - VIDEO_FPS) > 0.01:
                    raise ValueError(f"frame rate {fps:g} fps, expected 25")
        except ValueError as e:
            raise ValueError(f"{key}: {path}: {e}") from e
        if frames.ndim != 3 or len(frames) == 0:
            raise ValueError(f"{key}: {path} holds shape {frames.shape}, expected (T, H, W)")
        return frames.astype(np.float32)


def write_video_npy(path: str, frames: np.ndarray) -> None:
    """Writes (T, H, W) frames as uint8 .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.clip(frames, 0, 255).astype(np.uint8))


def write_video_mp4(
    path: str,
    frames: Iterable[np.ndarray],
    fps: int = VIDEO_FPS,
    audio: Optional[np.ndarray] = None,
    sample_rate: int = SAMPLE_RATE,
    options: Optional[Dict[str, str]] = None,
    frame_times: Optional[Iterable[float]] = None,
    audio_start: float = 0.0,
) -> None:
    """Writes grayscale (H, W) or RGB (H, W, 3) frames as an H.264 mp4,
    atomically.

    ``frames``: an array (T, H, W[, 3]) or any iterable of frames, such as a
    generator: each frame is encoded as it comes, so a long video is never
    held whole; the size is the first frame's, and every frame must have
    it. ``audio`` (S,) in -1..1, if given, becomes a mono AAC track, muxed
    beside the frames it goes with. ``options``: libx264's own (e.g.
    ``{"preset": "ultrafast", "crf": "18"}``). ``frame_times`` (s), one
    per frame and increasing, time-stamp the frames (a variable frame rate;
    by default frame i is at i / fps); ``audio_start`` (s) is where the
    sound track's stream starts. Raises ValueError for no frames or a
    frame of another size.
    """
    import av

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    height, width = np.shape(first)[:2]
    with atomic_path(path) as tmp, av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=dict(options or {}))
        stream.height, stream.width = height, width
        stream.pix_fmt = "yuv420p"
        # A tick of a thousandth of a frame, so that time stamps off the
        # frame grid keep their place.
        ticks = fps * 1000
        stream.time_base = fractions.Fraction(1, ticks)
        times = itertools.count(0.0, 1 / fps) if frame_times is None else iter(frame_times)
        track = None if audio is None else container.add_stream("aac", rate=sample_rate, layout="mono")
        pcm = None if audio is None else to_pcm16(audio)
        offset = int(round(audio_start * sample_rate))
        sent = 0  # audio samples muxed so far

        def mux_audio(until: int) -> None:
            # 1024 samples a chunk, an AAC frame's; muxed beside the video
            # frames of the same time rather than all after the picture.
            nonlocal sent
            while sent < min(until, len(pcm)):
                chunk = av.AudioFrame.from_ndarray(pcm[None, sent : sent + 1024], format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = sample_rate, offset + sent
                container.mux(track.encode(chunk))
                sent += 1024

        for index, frame in enumerate(itertools.chain([first], frames)):
            frame = np.clip(frame, 0, 255).astype(np.uint8)
            if frame.shape[:2] != (height, width):
                raise ValueError(f"{path}: frame {index} is {frame.shape[:2]}, the first {(height, width)}")
            rgb = frame if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, axis=2)
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            at = next(times)
            picture.pts, picture.time_base = int(round(at * ticks)), stream.time_base
            container.mux(stream.encode(picture))
            if track is not None:
                mux_audio(int((at + 1 / fps) * sample_rate) - offset)
        container.mux(stream.encode())
        if track is not None:
            mux_audio(len(pcm))
            container.mux(track.encode())


register_data_type(
    "video",
    VideoScpReader,
    "Mouth-ROI video: .npy (T, H, W) or a video file, grayscale."
    "\n\n   utterance_id_a a.npy\n   utterance_id_b b.mp4\n   ...",
)
