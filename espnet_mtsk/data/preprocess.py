"""Per-utterance checks and text tokenisation before batching."""

from typing import Dict, Optional, Union

import numpy as np
from typeguard import typechecked

from espnet_mtsk.data.augment import DEFAULT_DB_RANGE, NoiseAugmenter
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS
from espnet_mtsk.llm.causal_lm import load_tokenizer


class AVSRPreprocessor:
    """Checks one utterance and turns its transcript into LLM token ids.

    It has the call signature of ESPnet's ``AbsPreprocessor`` without
    subclassing it: that module imports the phoneme tokenizers, whose nltk
    set-up tries a download at import time.

    In: ``{"speech": (S,), "video": (T, H, W), "text": str}`` (any subset).
    Out: the same arrays, with ``text`` as int64 ids (L,) of the lower-cased
    transcript; in training with a ``noise_scp``, noise mixed into
    ``speech``; with ``video_crop`` C > 0, ``video`` cut to (T, C, C).
    Errors name the utterance:
    - an empty transcript, or a transcript when there is no ``llm_dir``;
    - audio and video durations (S / 16000 s and T / 25 s) that differ by
      more than ``av_tolerance`` seconds (0.2 s by default: LRS3 clips differ
      by a frame or two, while a wrong pairing is off by far more);
    - video frames smaller than ``video_crop`` on either side.

    Args:
        llm_dir: the LLM's HF folder, for its tokenizer; None where no
            text is tokenised (only the checks and the crop), so that no
            LLM folder is read.
        av_tolerance: the largest accepted audio/video duration gap (s).
        noise_scp, noise_db_range, noise_apply_prob: training-time noise
            (ESPnet's options), see ``NoiseAugmenter``.
        video_crop: side C of the square crop the video encoder gets (88 for
            the AV-HuBERT checkpoints), as auto-avsr does with its 96x96
            mouth crops: in training a random C x C window, one position for
            all frames of an utterance; otherwise the centre window. Frames
            of exactly C x C pass unchanged; 0 keeps frames as they are.
    """

    @typechecked
    def __init__(
        self,
        train: bool,
        llm_dir: Optional[str],
        av_tolerance: float = 0.2,
        noise_scp: Optional[str] = None,
        noise_db_range: str = DEFAULT_DB_RANGE,
        noise_apply_prob: float = 0.5,
        video_crop: int = 0,
    ):
        if video_crop < 0:
            raise ValueError(f"video_crop must be >= 0 (0: no crop), got {video_crop}")
        self.train = train
        self.tokenizer = None if llm_dir is None else load_tokenizer(llm_dir)
        self.av_tolerance = av_tolerance
        self.video_crop = video_crop
        self.noise = None
        if train and noise_scp is not None:
            self.noise = NoiseAugmenter(noise_scp, noise_db_range, noise_apply_prob)

    def __call__(
        self, uid: str, data: Dict[str, Union[str, np.ndarray]]
    ) -> Dict[str, np.ndarray]:
        if "speech" in data and data["speech"].ndim != 1:
            raise ValueError(
                f"{uid}: expected mono audio (samples,), got shape {data['speech'].shape}"
            )
        if "video" in data and data["video"].ndim != 3:
            raise ValueError(
                f"{uid}: expected video (frames, H, W), got shape {data['video'].shape}"
            )
        if "speech" in data and "video" in data:
            check_av_durations(uid, len(data["speech"]), len(data["video"]), self.av_tolerance)
        if self.video_crop and "video" in data:
            data["video"] = self._crop_video(uid, data["video"])
        if self.noise is not None and "speech" in data:
            data["speech"] = self.noise(data["speech"], _rng())
        if "text" in data:
            if self.tokenizer is None:
                raise ValueError(
                    f"{uid}: has a transcript, but no LLM folder (llm_dir) was given to tokenise it"
                )
            text = data["text"].strip().lower()
            if not text:
                raise ValueError(f"{uid}: empty transcript")
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            data["text"] = np.asarray(ids, dtype=np.int64)
        return data

    def _crop_video(self, uid: str, video: np.ndarray) -> np.ndarray:
        """(T, H, W) -> (T, C, C), C = ``video_crop``: the centre window, or
        in training a random one (the same for every frame)."""
        size = self.video_crop
        height, width = video.shape[1:]
        if height < size or width < size:
            raise ValueError(
                f"{uid}: video frames are {height}x{width}, smaller than "
                f"video_crop {size}x{size}"
            )
        if self.train:
            rng = _rng()
            top = int(rng.integers(height - size + 1))
            left = int(rng.integers(width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        return np.ascontiguousarray(video[:, top : top + size, left : left + size])


def check_av_durations(uid: str, samples: int, frames: int, tolerance: float) -> None:
    """A ValueError naming ``uid`` when ``samples`` of 16 kHz audio and
    ``frames`` of 25 fps video last more than ``tolerance`` seconds apart."""
    audio_sec, video_sec = samples / SAMPLE_RATE, frames / VIDEO_FPS
    if abs(audio_sec - video_sec) > tolerance:
        raise ValueError(
            f"{uid}: audio lasts {audio_sec:.2f} s but video {video_sec:.2f} s "
            f"(tolerance {tolerance} s)"
        )


def _rng() -> np.random.Generator:
    # Drawn from numpy's global state, which ESPnet seeds per data-loader
    # worker, so workers do not repeat each other's draws and a seed repeats
    # them all.
    return np.random.default_rng(np.random.randint(2**31))
