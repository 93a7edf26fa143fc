"""Scale ids and the Matryoshka set: the one place that maps a scale to its rates.

A scale id names the compression rate of every modality the LLM sees:
``a4`` (ASR, audio rate 4), ``v2`` (VSR, video rate 2), ``a4_v2`` (AVSR).
The projector of a (modality, rate) pair is keyed by its token (``a4``), and
the per-scale LoRA adapter by the scale id, so a scale id on the command line
leads straight to the modules it switches on.
"""

import itertools
import re
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

MODALITIES = {"a": "audio", "v": "video"}
# "all" trains the ASR, VSR and AVSR scales of one model together, so a
# single training serves every modality (a recipe can then compare them).
MODES = {
    "asr": ("audio",),
    "vsr": ("video",),
    "avsr": ("audio", "video"),
    "all": ("audio", "video"),
}
_TOKEN = re.compile(r"^([av])([1-9][0-9]*)$")


@dataclass(frozen=True)
class Scale:
    """One operating point: a compression rate per modality, in prompt order."""

    rates: Tuple[Tuple[str, int], ...]

    @property
    def id(self) -> str:
        return "_".join(f"{m[0]}{r}" for m, r in self.rates)

    @property
    def modalities(self) -> Tuple[str, ...]:
        return tuple(m for m, _ in self.rates)

    def keys(self) -> Dict[str, str]:
        """Projector key per modality, e.g. ``{"audio": "a4", "video": "v2"}``."""
        return {m: f"{m[0]}{r}" for m, r in self.rates}

    def __str__(self) -> str:
        return self.id


def reads_only(modalities: Sequence[str], present: Sequence[str]) -> bool:
    """Whether a scale that reads ``modalities`` can decode an input that
    holds only the ``present`` ones."""
    return set(modalities) <= set(present)


def parse_scale(scale_id: str) -> Scale:
    """``"a4_v2"`` -> Scale((("audio", 4), ("video", 2))); errors name the id."""
    rates = []
    for token in scale_id.split("_"):
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(
                f"Bad scale id '{scale_id}': expected tokens like a4, v2 or a4_v2"
            )
        rates.append((MODALITIES[match.group(1)], int(match.group(2))))
    names = [m for m, _ in rates]
    if names not in (["audio"], ["video"], ["audio", "video"]):
        raise ValueError(
            f"Bad scale id '{scale_id}': one audio and/or one video rate, audio first"
        )
    return Scale(tuple(rates))


def matryoshka_scales(
    mode: str, audio_rates: Sequence[int] = (), video_rates: Sequence[int] = ()
) -> List[Scale]:
    """Every scale trained together: one per rate, the cross product for AVSR.

    ``all`` is the union of the ASR, VSR and AVSR sets, in that order.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got '{mode}'")
    if mode == "all":
        return [
            scale
            for sub in ("asr", "vsr", "avsr")
            for scale in matryoshka_scales(sub, audio_rates, video_rates)
        ]
    per_modality = {"audio": list(audio_rates), "video": list(video_rates)}
    for modality in MODES[mode]:
        rates = per_modality[modality]
        if not rates or any(int(r) < 1 for r in rates) or len(set(rates)) != len(rates):
            raise ValueError(
                f"mode '{mode}' needs distinct positive {modality}_rates, got {rates}"
            )
    grids = [[(m, int(r)) for r in per_modality[m]] for m in MODES[mode]]
    return [Scale(tuple(combo)) for combo in itertools.product(*grids)]


def config_scales(model_conf: dict) -> List[Scale]:
    """The Matryoshka set of a training config's ``model_conf``."""
    return matryoshka_scales(
        model_conf["mode"], model_conf.get("audio_rates", ()), model_conf.get("video_rates", ())
    )


def projector_keys(scales: Sequence[Scale]) -> Dict[str, Tuple[str, int]]:
    """Every (modality, rate) pair the scales use, keyed as ``a4`` / ``v2``."""
    keys = {}
    for scale in scales:
        for (modality, rate), key in zip(scale.rates, scale.keys().values()):
            keys[key] = (modality, rate)
    return keys


if __name__ == "__main__":
    # For the recipes' shell scripts: python -m espnet_mtsk.scales CONFIG.yaml
    # prints the scale ids of a training config.
    import sys

    import yaml

    with open(sys.argv[1]) as f:
        print(" ".join(s.id for s in config_scales(yaml.safe_load(f)["model_conf"])))
