"""What a checkpoint holds and where the rest comes from: the pretrained
folders and files a config names (its *sources*), the keys they fill, and
strict loading of a checkpoint with the sources filling what it leaves out."""

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Union

import torch

from espnet_mtsk.encoders.avhubert_checkpoint import load_avhubert_checkpoint


def chosen(name: Optional[str]) -> Optional[str]:
    # A YAML "none" reaches build_model as a string (argparse types apply to
    # the command line only), and ClassChoices.get_class rejects it.
    return None if name is None or name.lower() in ("none", "null", "nil") else name

# The config options that name pretrained weights, and the part of the model
# each one fills. ESPnet's --init_param entries are sources too; their files
# say which keys they fill.
PRETRAINED_OPTIONS = {
    "llm_conf.model_dir": "llm.model.",
    "audio_encoder_conf.model_dir": "encoders.audio.",
    "video_encoder_conf.checkpoint": "encoders.video.",
}
# Read whenever the model is built (they give its shapes and tokenizer); the
# others only when a checkpoint lacks what they fill.
BUILT_FROM = ("llm_conf.model_dir", "audio_encoder_conf.model_dir")


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """A folder or file of pretrained weights that a config names.

    ``option`` says where: a key of PRETRAINED_OPTIONS, or ``init_param.<i>``
    for ESPnet's i-th ``--init_param`` entry, whose ``:src_key:dst_key:excludes``
    part is ``suffix``.
    """

    option: str
    path: str
    suffix: str = ""

    @property
    def is_init_param(self) -> bool:
        return self.option.startswith("init_param.")

    def init_param_state(self) -> Dict[str, torch.Tensor]:
        """An init_param file's tensors under the model keys they fill, mapped
        as ESPnet's load_pretrained_model maps them, read with weights_only."""
        src_key, dst_key, excludes = (self.suffix.split(":") + [""] * 4)[1:4]
        state = torch.load(self.path, map_location="cpu", mmap=True, weights_only=True)
        state = state.get("module", state)
        for prefix in filter(None, excludes.split(",")):
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        if src_key:
            state = {k[len(src_key) + 1 :]: v for k, v in state.items() if k.startswith(src_key)}
        return {(f"{dst_key}.{k}" if dst_key else k): v for k, v in state.items()}

    def provided_keys(self, keys: Iterable[str]) -> Set[str]:
        """Which of the model's state ``keys`` this source fills."""
        if self.is_init_param:
            return set(self.init_param_state()) & set(keys)
        prefix = PRETRAINED_OPTIONS[self.option]
        # peft's adapters live inside the LLM's modules but not in its folder.
        return {k for k in keys if k.startswith(prefix) and ".lora_" not in k}

    def fill(self, model: torch.nn.Module) -> None:
        """Loads the source into a model built without it."""
        if self.is_init_param:
            state = self.init_param_state()
            report = _mismatches(model.state_dict(), state, check_missing=False)
            if report:
                raise ValueError(f"{self.option} {self.path} does not fit the model:\n{report}")
            model.load_state_dict(state, strict=False)
        else:
            load_avhubert_checkpoint(self.path, model.encoders["video"])
        logging.info(f"{self.option}: loaded {self.path}")


def pretrained_sources(args: argparse.Namespace) -> List[PretrainedSource]:
    """The pretrained folders and files a task config names, in the order
    they are loaded."""
    sources = []
    for option in PRETRAINED_OPTIONS:
        conf, key = option.split(".")
        value = (getattr(args, conf, None) or {}).get(key)
        if value and chosen(getattr(args, conf[: -len("_conf")], None)) is not None:
            sources.append(PretrainedSource(option, str(value)))
    for i, entry in enumerate(getattr(args, "init_param", None) or []):
        path, sep, rest = entry.partition(":")
        sources.append(PretrainedSource(f"init_param.{i}", path, sep + rest))
    return sources


def set_option(args: argparse.Namespace, option: str, value: Optional[str]) -> None:
    """Points a source's ``option`` of ``args`` at ``value`` (None: drops a
    ``<group>_conf`` key)."""
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


def freeze(model: torch.nn.Module, names: Iterable[str]) -> None:
    """ESPnet's --freeze_param: parameters called ``name`` or under ``name.``."""
    names = list(names)
    for key, param in model.named_parameters():
        if any(key == name or key.startswith(name + ".") for name in names):
            param.requires_grad_(False)


def pretrained_keys(model: torch.nn.Module, sources: Iterable[PretrainedSource]) -> Set[str]:
    """The keys of the model's state that ``sources`` fill and training leaves
    as they were: their frozen parameters, and their buffers (batch-norm
    statistics) when none of a source's parameters train, since a frozen
    encoder runs in eval mode. Frozen weights no source fills (a randomly
    initialised frozen encoder) are not among them."""
    params = dict(model.named_parameters(remove_duplicate=False))
    keys = list(model.state_dict())
    out: Set[str] = set()
    for source in sources:
        provided = source.provided_keys(keys)
        trained = {k for k in provided if k in params and params[k].requires_grad}
        out |= {k for k in provided if k in params and k not in trained} if trained else provided
    return out


def leave_out_of_state_dict(model: torch.nn.Module, keys: Set[str]) -> None:
    """Makes ``model.state_dict()`` leave ``keys`` out and ``load_state_dict``
    accept their absence: ESPnet's trainer saves and resumes through these."""

    def drop(module, state, prefix, local_metadata):
        for key in keys:
            state.pop(prefix + key, None)

    def allow_missing(module, incompatible):
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if k not in keys]

    model.register_state_dict_post_hook(drop)
    model.register_load_state_dict_post_hook(allow_missing)


def read_state(model_file: Union[Path, str]) -> Dict[str, torch.Tensor]:
    # mmap: a checkpoint with every weight is gigabytes; only its keys may be needed.
    return torch.load(model_file, map_location="cpu", mmap=True, weights_only=True)


def _mismatches(
    own: Dict[str, torch.Tensor], state: Dict[str, torch.Tensor], check_missing: bool = True
) -> str:
    """The keys of ``state`` the model lacks, mis-shaped ones and (with
    ``check_missing``) the model's keys ``state`` lacks, as indented lines."""
    missing = sorted(set(own) - set(state)) if check_missing else []
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    lines = []
    for title, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", shapes),
    ):
        if items:
            shown = ", ".join(items[:10]) + (" ..." if len(items) > 10 else "")
            lines.append(f"  {title} ({len(items)}): {shown}")
    return "\n".join(lines)


def load_checkpoint(
    model: torch.nn.Module, model_file: Union[Path, str], may_be_missing: Iterable[str] = ()
) -> None:
    """Loads a state dict into ``model``; any mismatch is a ValueError.

    ``may_be_missing``: keys the file need not hold (``pretrained_keys``:
    those the pretrained sources filled).
    """
    state = read_state(model_file)
    skip = set(may_be_missing)
    own = {k: v for k, v in model.state_dict().items() if k not in skip or k in state}
    report = _mismatches(own, state)
    if report:
        raise ValueError(f"Checkpoint {model_file} does not fit the model of its config:\n{report}")
    model.load_state_dict(state, strict=False)
    logging.info(f"Loaded {model_file}")
