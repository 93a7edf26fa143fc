"""The ``encoded`` data type: outputs of a frozen encoder, dumped once.

A frozen pretrained encoder (Whisper) gives the same states every epoch, so
recipes may run it once per utterance and train on its outputs, as ESPnet's
egs2/lrs3/avsr1 trains on dumped AV-HuBERT features. Each line of the scp
is ``utt_id path [path ...]``: ``.npy`` arrays (T, D), one per variant of
the utterance (clean, then noisy copies). Each read returns one variant,
drawn at random, so training still sees clean and noisy audio in turn, but
only the noise drawn when dumping, not fresh noise every epoch.
``espnet_mtsk.bin.dump_encoded`` records what made the arrays in
``provenance.json`` beside the scp and makes them again when its config
changes; the reader, which sees no config, does not check it.
Importing this module registers the type in ESPnet's ``DATA_TYPES``.
"""

from typing import Dict, List

import numpy as np
from typeguard import typechecked

from espnet_mtsk.data.scp import ScpMapping, register_data_type


def read_variants_scp(fname: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    with open(fname, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) < 2:
                raise ValueError(f"{fname}:{n}: expected 'utt_id path [path ...]'")
            if fields[0] in out:
                raise ValueError(f"{fname}:{n}: utterance '{fields[0]}' listed twice")
            out[fields[0]] = fields[1:]
    return out


class EncodedScpReader(ScpMapping[List[str]]):
    """scp -> float32 (T, D), one random variant per read. Errors name the
    utterance and the file: an id not in the scp, a missing or unreadable
    file, an array that is not (T, D)."""

    @typechecked
    def __init__(self, fname: str):
        super().__init__(fname, read_variants_scp(fname))

    def __getitem__(self, key: str) -> np.ndarray:
        paths = self.entry(key)
        # The global generator: ESPnet seeds it per epoch and data worker.
        path = paths[np.random.randint(len(paths))]
        try:
            array = np.load(path)
        except (OSError, ValueError) as e:
            raise ValueError(f"{self.fname}: utterance '{key}': cannot read {path} ({e})") from e
        if array.ndim != 2:
            raise ValueError(f"{self.fname}: utterance '{key}': {path} has shape {array.shape}, expected (T, D)")
        return array.astype(np.float32)


def encoded_name(modality: str) -> str:
    """The data name of a modality's dumped encoder outputs."""
    return {"audio": "speech", "video": "video"}[modality] + "_encoded"


register_data_type(
    "encoded",
    EncodedScpReader,
    "Dumped encoder outputs (T, D), one .npy per variant; a random "
    "variant per read.\n\n   utterance_id_a a.clean.npy a.noisy.npy\n   ...",
)
