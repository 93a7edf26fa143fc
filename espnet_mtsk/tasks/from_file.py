"""A trained model (or its encoders alone) built from its config and
checkpoint files: the pretrained sources the config names located on this
machine, read only where the checkpoint lacks what they fill, then the
checkpoint loaded strictly (``AVSRTask.build_model_from_file`` and
``build_encoders_from_file``)."""

import argparse
import copy
from pathlib import Path
from typing import Callable, Collection, Dict, Iterable, Optional, Sequence, Tuple, Union

import torch

from espnet_mtsk.model import audio_features
from espnet_mtsk.tasks.checkpoint import (
    BUILT_FROM,
    PRETRAINED_OPTIONS,
    PretrainedSource,
    SourceLocator,
    check_pretrained,
    freeze,
    in_parts,
    load_checkpoint,
    pretrained_keys,
    pretrained_sources,
    read_state,
)


def set_option(args: argparse.Namespace, option: str, value: Optional[str]) -> None:
    """Points a pretrained source's ``option`` of ``args`` at ``value``
    (None: drops a ``<group>_conf`` key)."""
    if option.startswith("init_param."):
        args.init_param[int(option.split(".")[1])] = value
        return
    conf, key = option.split(".")
    values = dict(getattr(args, conf, None) or {})
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
    setattr(args, conf, values)


def pointed_at(args: argparse.Namespace, sources: Iterable[PretrainedSource]) -> argparse.Namespace:
    """A copy of ``args`` whose options name the places of ``sources``."""
    out = argparse.Namespace(**copy.deepcopy(vars(args)))
    for source in sources:
        set_option(out, source.option, source.path + source.suffix)
    return out


# The model's parts (top-level state key names) that its encoder outputs
# depend on: what ``Encoders`` holds.
ENCODER_PARTS = ("frontend", "normalize", "encoders")


class Encoders(torch.nn.Module):
    """A model's audio front end and encoders alone, under the model's own
    state keys (``frontend.*``, ``normalize.*``, ``encoders.<modality>.*``).

    ``parts``: what ``AVSRTask.build_encoders`` returns; ``modalities``: the
    encoders kept (those of the model's mode), each of which ``parts`` must
    hold.
    """

    def __init__(self, parts: Dict[str, torch.nn.Module], modalities: Sequence[str]):
        super().__init__()
        self.frontend = parts.get("frontend")
        self.normalize = parts.get("normalize")
        self.encoders = torch.nn.ModuleDict({m: parts[f"{m}_encoder"] for m in modalities})

    def forward(self, modality: str, xs: torch.Tensor, lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Speech (B, S) or video (B, T, H, W) and lengths (B,) -> encoder
        states (B, T', D) and their lengths (B,), as the model's ``encode``
        computes them."""
        if modality == "audio":
            xs, lens = audio_features(self.frontend, self.normalize, xs, lens)
        hs, hlens, _ = self.encoders[modality](xs, lens)
        return hs, hlens


def read_config(
    config_file: Optional[Union[Path, str]], model_file: Optional[Union[Path, str]]
) -> Tuple[Path, argparse.Namespace]:
    """The config file (by default the ``config.yaml`` beside ``model_file``)
    and its options."""
    import yaml

    if config_file is None:
        if model_file is None:
            raise ValueError("Give config_file or model_file")
        config_file = Path(model_file).parent / "config.yaml"
    with Path(config_file).open("r", encoding="utf-8") as f:
        return Path(config_file), argparse.Namespace(**yaml.safe_load(f))


def load_built(
    args: argparse.Namespace,
    locator: SourceLocator,
    model_file: Path,
    accept_pretrained_changes: bool,
    build: Callable[[argparse.Namespace], torch.nn.Module],
    parts: Optional[Collection[str]] = None,
) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """What ``build`` makes of ``args``: the whole model, or (``parts``,
    see ``in_parts``) some of its parts under the model's key names.
    It is built from those of the LLM and Whisper folders that ``parts``
    include, where ``locator`` finds them; filled from the other sources
    only where ``model_file`` lacks what they fill; then loaded with
    ``model_file``'s keys within ``parts``, strictly. Returns it and the
    config it was built from."""
    sources = pretrained_sources(args)
    # What is not built is not read: the encoders alone leave the LLM's
    # folder (which may be a packed reference to find) untouched.
    built = [
        locator.locate(s)
        for s in sources
        if s.option in BUILT_FROM and in_parts(PRETRAINED_OPTIONS[s.option], parts)
    ]
    lazy = [s for s in sources if s.option not in BUILT_FROM]
    build_args = pointed_at(args, built)
    for source in lazy:
        if not source.is_init_param:
            set_option(build_args, source.option, None)
    build_args.init_param = []
    model = build(build_args)
    freeze(model, getattr(args, "freeze_param", None) or [])
    keys = list(model.state_dict())
    lacking = set(keys) - set(read_state(model_file))
    # The sources whose weights fill what the checkpoint lacks.
    leaned_on = [s for s in built if s.provided_keys(keys) & lacking]
    unfilled = lacking - set().union(*(s.provided_keys(keys) for s in built))
    filled = list(built)
    for source in lazy:
        # The AV-HuBERT file is large: it is located only when needed.
        if not unfilled or not (source.is_init_param or source.provided_keys(keys) & unfilled):
            continue
        source = locator.locate(source)
        provided = source.provided_keys(keys)
        if provided & unfilled:
            source.fill(model, parts)
            filled.append(source)
            leaned_on.append(source)
            unfilled -= provided
    check_pretrained(model_file.parent, leaned_on, accept_pretrained_changes)
    load_checkpoint(model, model_file, pretrained_keys(model, filled), parts)
    return model, build_args
