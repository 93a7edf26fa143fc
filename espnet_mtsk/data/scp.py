"""What every ``*.scp`` data type shares: a table of utterance ids read once,
and lookups whose errors name the utterance and the scp; and a data dir's
audio, read as ESPnet reads it."""

import collections.abc
import io
import subprocess
from pathlib import Path
from typing import Dict, Generic, NamedTuple, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import soundfile
from espnet2.fileio.read_text import read_2columns_text, read_multi_columns_text
from espnet2.train import dataset as espnet_dataset

from espnet_mtsk.fileio import SAMPLE_RATE

Entry = TypeVar("Entry")


class ScpMapping(collections.abc.Mapping, Generic[Entry]):
    """A lazily loading ``utt_id -> array`` mapping over an scp table;
    subclasses read ``self.entry(key)`` in ``__getitem__``."""

    def __init__(self, fname: str, table: Dict[str, Entry]):
        self.fname = fname
        self.data = table

    def entry(self, key: str) -> Entry:
        if key not in self.data:
            raise KeyError(f"utterance '{key}' is not in {self.fname}")
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self):
        return self.data.keys()


def register_data_type(name: str, reader: Type[ScpMapping], help: str) -> None:
    """Adds ``name`` to ESPnet's data types (idempotent), so that
    ``--*_data_path_and_name_and_type path,name,<name>`` reads with ``reader``."""
    espnet_dataset.DATA_TYPES.setdefault(name, dict(func=reader, kwargs=[], help=help))


class AudioSource(NamedTuple):
    """Where an utterance's audio is: a ``wav.scp`` entry (a file or a Kaldi
    pipe ``cmd |``) and the stretch of it in seconds (``end`` -1: to its end)."""

    entry: str
    start: float = 0.0
    end: float = -1.0


class AudioDirReader(ScpMapping[AudioSource]):
    """A Kaldi data dir's audio, read as ESPnet's format_wav_scp reads it:
    ``utt_id`` -> float32 (S,) 16 kHz, channels averaged to mono.

    ``wav.scp`` entries are sound files or pipes (``cmd |``, run by the
    shell; a non-zero exit status is an error); with a ``segments`` file
    (``utt_id recording start end``, seconds) the utterances are stretches
    of the recordings ``wav.scp`` lists. Errors name the utterance and the entry: a recording no entry
    lists, audio that cannot be read, a sample rate other than 16 kHz.
    """

    def __init__(self, data_dir: Union[Path, str]):
        wav_scp = Path(data_dir) / "wav.scp"
        entries = read_2columns_text(wav_scp)
        segments_file = Path(data_dir) / "segments"
        if not segments_file.exists():
            super().__init__(str(wav_scp), {utt: AudioSource(entry) for utt, entry in entries.items()})
        else:
            table = {}
            for utt, fields in read_multi_columns_text(segments_file)[0].items():
                try:
                    recording, start, end = fields
                    table[utt] = AudioSource(entries[recording], float(start), float(end))
                except (KeyError, ValueError) as e:
                    raise ValueError(
                        f"{segments_file}: {utt}: expected 'utt_id recording start end' "
                        f"with a recording of {wav_scp}, got {' '.join(fields)!r}"
                    ) from e
            super().__init__(str(segments_file), table)
        self._last: Tuple[Optional[str], np.ndarray] = (None, np.zeros(0, np.float32))

    def file(self, key: str) -> Optional[str]:
        """The sound file that holds exactly the utterance; None for a pipe
        or a segment."""
        entry, start, end = self.entry(key)
        return None if _is_pipe(entry) or (start, end) != (0.0, -1.0) else entry

    def __getitem__(self, key: str) -> np.ndarray:
        entry, start, end = self.entry(key)
        if self._last[0] != entry:
            # A segments file lists a recording's utterances together: the
            # last recording kept is read once for all of them.
            self._last = (entry, self._read(key, entry))
        # Rounded, not cut: "0.7" s is 11199.999... samples. A copy, so that
        # a caller changing it leaves the kept recording as it is.
        first, last = round(start * SAMPLE_RATE), None if end == -1 else round(end * SAMPLE_RATE)
        return self._last[1][first:last].copy()

    def _read(self, key: str, entry: str) -> np.ndarray:
        try:
            if _is_pipe(entry):
                # Run here rather than through kaldiio, whose pipe reader
                # ignores the command's exit status: a command that fails
                # after writing part of a file would pass as shorter audio.
                done = subprocess.run(entry.rstrip()[:-1], shell=True, capture_output=True)
                if done.returncode != 0:
                    raise ValueError(
                        f"{self.fname}: utterance '{key}': {entry!r} exited with status {done.returncode}: "
                        + done.stderr.decode(errors="replace").strip()[-500:]
                    )
                wave, rate = soundfile.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
            else:
                wave, rate = soundfile.read(entry, dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as e:
            raise ValueError(f"{self.fname}: utterance '{key}': cannot read {entry!r} ({e})") from e
        if rate != SAMPLE_RATE:
            raise ValueError(f"{self.fname}: utterance '{key}': {entry!r} is {rate} Hz, expected {SAMPLE_RATE}")
        return wave.mean(axis=1)


def _is_pipe(entry: str) -> bool:
    return entry.rstrip().endswith("|")
