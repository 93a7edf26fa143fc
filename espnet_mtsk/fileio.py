"""Files and media: the rates data is kept at, files written whole or not at
all, Kaldi-style data dirs, and any media file's sound as 16 kHz mono.

Only numpy and soundfile are imported here (PyAV when media is decoded), so
a cost table can read the rates without the model's stack.
"""

import contextlib
import itertools
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional, Tuple, Union

import numpy as np
import soundfile

SAMPLE_RATE = 16000
VIDEO_FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640
# A stretch of a media file, (start, end) in seconds on its clock (``clock_origin``).
Span = Tuple[float, float]

# atomic_path's temporary names: "." + the target's name + "." + 8 random
# characters (hex digits; tempfile.mkstemp's made by earlier versions) + the
# target's suffix.
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>(\.[A-Za-z0-9]+)?)$")


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[str]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when
    the block succeeds, removed when it fails, so a reader (or a resumed
    run) never finds a half-written ``path``.

    ``path`` gets the permissions ``open(path, "w")`` would give it: those
    of the file it replaces, else 0666 less the umask (or as the folder's
    default ACL says), so that a group shares what its runs write.
    """
    path = Path(path)
    # Created as open() creates a file, with mode 0666 that the kernel
    # narrows by the umask or default ACL (mkstemp's 0600 hid every file
    # from the group; reading the umask means setting it, which races with
    # other threads). O_EXCL as mkstemp: a name in use is an error, never
    # overwritten, and 32 random bits make that as good as impossible.
    tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{path.suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        # The replaced file's mode before anything is written (a 0600 file's
        # new contents are never readable by others), and again after, for
        # writers that make the file anew.
        replaced = _permissions(path)
        if replaced is not None:
            os.chmod(tmp, replaced)
        yield tmp
        if replaced is not None:
            os.chmod(tmp, replaced)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _permissions(path: Path) -> Optional[int]:
    """The read/write/execute bits of ``path``; None when it does not exist."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except FileNotFoundError:
        return None


def remove_temp_files(root: str) -> int:
    """Deletes the temporary files of ``atomic_path`` that a killed run left
    under ``root``; -> how many."""
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            match = _TEMP_NAME.match(name)
            if match and Path(match["target"]).suffix == match["suffix"]:
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def write_lines(path: Union[str, Path], lines: Iterable[str]) -> None:
    """Writes text lines (newline-terminated), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{line}\n" for line in lines)


def to_pcm16(wave: np.ndarray) -> np.ndarray:
    """float (S,) in [-1, 1] -> int16 (S,), clipping outside the range."""
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 (S,) -> float32 (S,) in [-1, 1)."""
    return pcm.astype(np.float32) / 32768.0


def write_wav(path: Union[str, Path], pcm: np.ndarray) -> None:
    """Writes int16 samples (S,) as a 16 kHz mono PCM16 wav, atomically."""
    with atomic_path(path) as tmp:
        soundfile.write(tmp, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def read_wav(path: str) -> np.ndarray:
    """A 16 kHz mono PCM16 wav -> int16 samples (S,)."""
    pcm, rate = soundfile.read(path, dtype="int16")
    if rate != SAMPLE_RATE or pcm.ndim != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {pcm.shape}")
    return pcm


def write_data_dir(folder: Union[str, Path], tables: Mapping[str, Mapping[str, str]]) -> None:
    """Writes a Kaldi-style data dir: each table ({utt_id: value}, e.g.
    ``wav.scp``, ``video.scp``, ``text``, ``utt2spk``) as ``utt_id value``
    lines sorted by id, and ``spk2utt`` from ``utt2spk``, each atomically.

    A path with white space in an ``.scp`` is a ValueError naming the
    utterance and the folder: Kaldi lists split on it.
    """
    os.makedirs(folder, exist_ok=True)
    for name, table in tables.items():
        if name.endswith(".scp"):
            for utt, path in table.items():
                if any(ch.isspace() for ch in path):
                    raise ValueError(f"{folder}/{name}: {utt}: path {path!r} has white space")
        write_lines(os.path.join(folder, name), (f"{k} {table[k]}" for k in sorted(table)))
    if "utt2spk" in tables:
        spk2utt = {}
        for utt in sorted(tables["utt2spk"]):
            spk2utt.setdefault(tables["utt2spk"][utt], []).append(utt)
        write_lines(os.path.join(folder, "spk2utt"), (f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)))


def clock_origin(container) -> float:
    """Where a PyAV container's presentation starts (s): the earliest start
    time of its first audio and first video stream, as a player plays them.
    Every time this project reads from a media file is on this clock, so a
    stream that starts late (phone recorders, editors, edit lists) keeps
    its place beside the other: 0 is the first moment either stream holds."""
    starts = [
        float(s.start_time * s.time_base)
        for s in (*container.streams.audio[:1], *container.streams.video[:1])
        if s.start_time is not None and s.time_base
    ]
    return min(starts) if starts else 0.0


def decode_audio(path: str) -> Optional[Tuple[np.ndarray, int]]:
    """A media file's first audio stream -> int16 (S,) 16 kHz mono and the
    stream's own sample rate; None when the file has no audio stream.

    Sample ``i`` is the sound at ``i / 16000`` s on the file's clock
    (``clock_origin``): a sound track that starts after the picture is
    preceded by silence until its first sample's time stamp. ffmpeg's
    resampler (``_resample``) makes the 16 kHz samples, for the training
    data and ``transcribe`` alike, and the PCM16 samples are what the
    training wavs hold, so a model hears its users' files as it heard its
    training data. Raises ValueError naming the file when it does not
    decode or its audio stream is empty.
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = stream.rate
            origin = clock_origin(container)
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                raise ValueError(f"{path}: the audio stream holds no samples")
            chunks = _resample(itertools.chain([first], frames))
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode audio ({e})") from e
    if not chunks:
        raise ValueError(f"{path}: the audio stream holds no samples")
    pcm = np.concatenate(chunks).astype(np.int16)
    lead = int(round(((first.time or 0.0) - origin) * SAMPLE_RATE))
    if lead > 0:
        pcm = np.concatenate([np.zeros(lead, np.int16), pcm])
    return pcm[max(-lead, 0):], rate


def resample_to_16k(wave: np.ndarray, rate: int) -> np.ndarray:
    """float (S,) mono in [-1, 1] at ``rate`` -> int16 (S',) at 16 kHz, by
    the resampler ``decode_audio`` uses (generated corpora go through it too)."""
    import av

    if len(wave) == 0:
        return np.zeros(0, np.int16)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave, np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = rate
    return np.concatenate(_resample([frame])).astype(np.int16)


def _resample(frames) -> list:
    """PyAV audio frames -> int16 16 kHz mono chunks: ffmpeg's resampler, the
    one every 16 kHz sample of this project comes from."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks = []
    for frame in frames:
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return chunks


def media_streams(path: str) -> Tuple[Optional[float], Optional[float]]:
    """A media file -> the times (s) at which its sound and its picture end
    on the file's clock (``clock_origin``; for streams that start together,
    their durations), None for a stream it lacks, read from its header
    without decoding (a stream without a duration of its own gets the
    file's). Raises ValueError naming the file when it does not open or
    holds neither."""
    import av

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with av.open(path) as container:
            origin = clock_origin(container)
            whole = (container.duration or 0) / av.time_base
            ends = []
            for streams in (container.streams.audio, container.streams.video):
                if not streams:
                    ends.append(None)
                    continue
                stream = streams[0]
                start = float(stream.start_time * stream.time_base) - origin if stream.start_time is not None else 0.0
                if stream.duration and stream.time_base:
                    ends.append(start + float(stream.duration * stream.time_base))
                else:
                    ends.append(whole)
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: cannot open media ({e})") from e
    if ends == [None, None]:
        raise ValueError(f"{path}: neither sound nor picture")
    return ends[0], ends[1]
