"""What every ``*.scp`` data type shares: a table of utterance ids read once,
and lookups whose errors name the utterance and the scp."""

import collections.abc
from typing import Dict, Generic, Type, TypeVar

from espnet2.train import dataset as espnet_dataset

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
