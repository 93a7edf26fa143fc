"""LRS2 / LRS3 audio: each clip's utterances (its pieces planned) and their
16 kHz wavs, decoded in parallel jobs; noisy copies of a test set."""

import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.data.augment import mix_at_snr
from espnet_mtsk.fileio import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    decode_audio,
    remove_temp_files,
    to_pcm16,
    write_data_dir,
    write_wav,
)
from espnet_mtsk.process_pool import process_pool
from local.lrs.layouts import Clip
from local.lrs.transcripts import Piece, frame_span, normalize_text, plan_pieces, read_lrs_txt


@dataclass
class Utterance:
    """A clip's utterance: the whole clip, or the piece of video ``frames``
    [first, last + 1) with its own wav."""

    utt_id: str
    clip_id: str
    speaker: str
    text: str
    wav: str
    frames: Optional[Tuple[int, int]] = None  # None: the whole clip
    video: Optional[str] = None


@dataclass
class SetResult:
    """What a set's data dir holds, and what was left out and why."""

    utts: List[Utterance] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)  # utt or clip id -> reason


def probe_duration(path: str) -> float:
    """Seconds of a media file's audio from its header (decodes if absent)."""
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1e6
    return len(clip_audio_pcm(path)) / SAMPLE_RATE


def clip_audio_pcm(path: str) -> np.ndarray:
    """A clip's sound track -> int16 (S,) 16 kHz mono; a ValueError naming
    the file when it has none."""
    track = decode_audio(path)
    if track is None:
        raise ValueError(f"{path}: no audio stream")
    return track[0]


def clip_audio(job: Tuple[Clip, str, float]) -> Tuple[str, List[Utterance], str]:
    """One clip: its utterances (planning the pieces) and their wav files.

    Returns (clip id, utterances, error); on error no utterance.
    """
    clip, wav_dir, max_duration = job
    try:
        if clip.txt is not None:
            text, words = read_lrs_txt(clip.txt)
        else:
            text, words = clip.text or "", []
        if clip.split:
            pieces = plan_pieces(text, words, probe_duration(clip.media), max_duration)
            names = [f"{clip.clip_id}_{i:02d}" for i in range(len(pieces))]
        else:
            pieces, names = [Piece(0.0, 0.0, text, whole=True)], [clip.clip_id]
        utts = []
        for name, piece in zip(names, pieces):
            if clip.audio is not None and piece.whole:
                wav = clip.audio
            else:
                wav = os.path.join(wav_dir, f"{name}.wav")
            utts.append(
                Utterance(
                    name,
                    clip.clip_id,
                    clip.speaker,
                    normalize_text(piece.text),
                    os.path.abspath(wav),
                    None if piece.whole else frame_span(piece),
                )
            )
        missing = [u for u in utts if not os.path.exists(u.wav)]
        if missing:
            pcm = clip_audio_pcm(clip.media)
            for u in missing:
                if u.frames is None:
                    part = pcm
                else:
                    part = pcm[u.frames[0] * SAMPLES_PER_FRAME : u.frames[1] * SAMPLES_PER_FRAME]
                if len(part) == 0:
                    raise ValueError(f"piece {u.utt_id} lies past the end of the audio")
                write_wav(u.wav, part)
        return clip.clip_id, utts, ""
    except Exception as e:  # noqa: BLE001 - reported per clip, the run goes on
        return clip.clip_id, [], f"{type(e).__name__}: {e}"


def run_jobs(fn, jobs: Sequence, nj: int) -> List:
    """``[fn(job) for job in jobs]`` in ``nj`` processes."""
    if nj <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with process_pool(nj, ["local.lrs.audio"]) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, min(64, len(jobs) // (4 * nj)))))


def make_noisy_copies(
    src_dir: str, noise_wav: str, snrs: Sequence[float], seed: int = 0
) -> List[str]:
    """``data/test`` -> ``data/test_snr<N>`` for each SNR (dB): the same
    utterances, video and text, the audio mixed with ``noise_wav`` (babble)
    at that SNR from an offset drawn per utterance (reproducible, the same
    for any run). Returns the new dirs; finished wavs are kept."""
    noise, rate = soundfile.read(noise_wav, dtype="float32")
    if rate != SAMPLE_RATE or noise.ndim != 1:
        raise ValueError(f"{noise_wav}: expected 16 kHz mono, got {rate} Hz, shape {noise.shape}")
    src = src_dir.rstrip("/")
    wavs = read_2columns_text(os.path.join(src, "wav.scp"))
    lists = {
        name: read_2columns_text(os.path.join(src, name))
        for name in ("video.scp", "text", "utt2spk")
        if os.path.exists(os.path.join(src, name))
    }
    made = []
    for snr in snrs:
        out = f"{src}_snr{snr:g}"
        wav_dir = os.path.abspath(os.path.join(out, "wav"))
        os.makedirs(wav_dir, exist_ok=True)
        remove_temp_files(out)
        table = {}
        for utt, path in sorted(wavs.items()):
            table[utt] = os.path.join(wav_dir, f"{utt}.wav")
            if os.path.exists(table[utt]):
                continue
            speech, _ = soundfile.read(path, dtype="float32")
            rng = np.random.default_rng([seed, zlib.crc32(utt.encode()), int(round(snr * 100)) % 2**31])
            write_wav(table[utt], to_pcm16(mix_at_snr(speech, noise, snr, rng)))
        write_data_dir(out, {"wav.scp": table, **lists})
        logging.info(f"{out}: {len(table)} utterances with babble at {snr:g} dB")
        made.append(out)
    return made
