"""Batching: ESPnet's common collate, with errors that name the utterance.

Same output as ``espnet2.train.collate_fn.CommonCollateFn`` (arrays padded
along their first axis, plus ``<name>_lengths``), written here because that
module imports the phoneme tokenizers, whose nltk set-up tries a download at
import time in every data-loader worker.
"""

from typing import Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet.nets.pytorch_backend.nets_utils import pad_list


class AVSRCollateFn:
    """[(utt, {name: (L, ...) array})] -> (utts, {name: (B, Lmax, ...), name_lengths: (B,)}).

    Floats are padded with ``float_pad_value``, integers with ``int_pad_value``.
    Every utterance of a batch must carry the same data names: one that lacks
    e.g. ``video`` is an error naming it.
    """

    def __init__(self, float_pad_value: float = 0.0, int_pad_value: int = -1):
        self.float_pad_value = float_pad_value
        self.int_pad_value = int_pad_value

    def __call__(
        self, data: Collection[Tuple[str, Dict[str, np.ndarray]]]
    ) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uttids = [u for u, _ in data]
        items = [d for _, d in data]
        names = set(items[0])
        for utt, item in zip(uttids, items):
            if set(item) != names:
                raise ValueError(
                    f"utterance {utt} has data {sorted(item)} but {uttids[0]} has "
                    f"{sorted(names)}"
                )
        batch = {}
        for name in items[0]:
            arrays = [torch.from_numpy(d[name]) for d in items]
            pad = self.int_pad_value if items[0][name].dtype.kind == "i" else self.float_pad_value
            batch[name] = pad_list(arrays, pad)
            batch[f"{name}_lengths"] = torch.tensor([len(a) for a in arrays], dtype=torch.long)
        return uttids, batch
