"""The ``video`` data type: a Kaldi-style ``video.scp`` read like ``wav.scp``.

Each line is ``utt_id path``; the path is a ``.npy`` array (T, H, W) or any
video file PyAV decodes (read as grayscale). Frames come back as float32
(T, H, W) with raw pixel values 0..255; the video encoder normalises them.
Importing this module registers the type in ESPnet's ``DATA_TYPES``.
"""

import collections.abc
import os
import tempfile
from pathlib import Path
from typing import Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text
from espnet2.train import dataset as espnet_dataset
from typeguard import typechecked

VIDEO_FPS = 25.0


def read_video(path: str) -> Tuple[np.ndarray, float]:
    """A video file -> grayscale frames (T, H, W) uint8 and its frame rate."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [f.to_ndarray(format="gray") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError) as e:
        raise ValueError(f"{path}: cannot decode video ({e})") from e
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames), fps


class VideoScpReader(collections.abc.Mapping):
    """``video.scp`` -> lazily loaded float32 arrays (T, H, W), one per utt.

    Errors name the utterance and the file: an id not in the scp (KeyError),
    a missing file (FileNotFoundError), an unreadable, empty or mis-shaped
    file, or a video whose frame rate is not 25 fps (ValueError).
    """

    @typechecked
    def __init__(self, fname: str):
        self.fname = fname
        self.data = read_2columns_text(fname)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.data:
            raise KeyError(f"utterance '{key}' is not in {self.fname}")
        path = self.data[key]
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

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        return iter(self.data)

    def keys(self):
        return self.data.keys()


def _atomic_path(path: str):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=Path(path).suffix)
    os.close(fd)
    return tmp


def write_video_npy(path: str, frames: np.ndarray) -> None:
    """Writes (T, H, W) frames as uint8 .npy, atomically."""
    tmp = _atomic_path(path)
    with open(tmp, "wb") as f:
        np.save(f, np.clip(frames, 0, 255).astype(np.uint8))
    os.replace(tmp, path)


def write_video_mp4(path: str, frames: np.ndarray, fps: int = 25) -> None:
    """Writes (T, H, W) grayscale frames as an H.264 mp4, atomically."""
    import av

    tmp = _atomic_path(path)
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    with av.open(tmp, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            rgb = np.repeat(frame[:, :, None], 3, axis=2)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def register_video_type() -> None:
    """Adds ``video`` to ESPnet's data types (idempotent)."""
    espnet_dataset.DATA_TYPES.setdefault(
        "video",
        dict(
            func=VideoScpReader,
            kwargs=[],
            help="Mouth-ROI video: .npy (T, H, W) or a video file, grayscale."
            "\n\n   utterance_id_a a.npy\n   utterance_id_b b.mp4\n   ...",
        ),
    )


register_video_type()
