"""The ``video`` data type: a Kaldi-style ``video.scp`` read like ``wav.scp``.

Each line is ``utt_id path``; the path is a ``.npy`` array (T, H, W) or any
video file PyAV decodes (read as grayscale). Frames come back as float32
(T, H, W) with raw pixel values 0..255; the video encoder normalises them.
Importing this module registers the type in ESPnet's ``DATA_TYPES``.
"""

from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text
from typeguard import typechecked

from espnet_mtsk.data.scp import ScpMapping, register_data_type
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, atomic_path


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
    frames: np.ndarray,
    fps: int = VIDEO_FPS,
    audio: Optional[np.ndarray] = None,
    sample_rate: int = SAMPLE_RATE,
) -> None:
    """Writes (T, H, W) grayscale or (T, H, W, 3) RGB frames as an H.264 mp4,
    atomically; ``audio`` (S,) in -1..1, if given, becomes a mono AAC track."""
    import av

    with atomic_path(path) as tmp:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            track = None
            if audio is not None:
                track = container.add_stream("aac", rate=sample_rate, layout="mono")
            for frame in frames:
                rgb = frame if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, axis=2)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode())
            if track is not None:
                pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
                for start in range(0, len(pcm), 1024):
                    chunk = av.AudioFrame.from_ndarray(
                        pcm[None, start : start + 1024], format="s16", layout="mono"
                    )
                    chunk.sample_rate = sample_rate
                    chunk.pts = start
                    container.mux(track.encode(chunk))
                container.mux(track.encode())


register_data_type(
    "video",
    VideoScpReader,
    "Mouth-ROI video: .npy (T, H, W) or a video file, grayscale."
    "\n\n   utterance_id_a a.npy\n   utterance_id_b b.mp4\n   ...",
)
