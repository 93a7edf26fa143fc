"""What a checkpoint holds and where the rest comes from: the pretrained
folders and files a config names (its *sources*), where they are on this
machine, whether they still hold the weights a training started from, the
keys they fill, and strict loading of a checkpoint with the sources filling
what it leaves out."""

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Collection, Dict, Iterable, List, Optional, Sequence, Set, Union

import torch

from espnet_mtsk.encoders.avhubert_checkpoint import load_avhubert_checkpoint
from espnet_mtsk.fileio import write_lines
from espnet_mtsk.hf_folder import differences, find_pretrained, weights_record


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
# Beside a training's checkpoints: the fingerprints of the sources it
# started from (record_pretrained, check_pretrained).
PRETRAINED_RECORD = "pretrained_fingerprints.json"


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

    def fill(self, model: torch.nn.Module, parts: Optional[Collection[str]] = None) -> None:
        """Loads the source into ``model`` built without it: the whole model,
        or those of its ``parts`` that were built alone (``in_parts``), under
        the model's key names. An init_param file's keys outside ``parts``
        are left alone; one inside them that ``model`` lacks, or a mis-shaped
        one, is a ValueError naming the file."""
        if self.is_init_param:
            state = {k: v for k, v in self.init_param_state().items() if in_parts(k, parts)}
            report = _mismatches(model.state_dict(), state, check_missing=False)
            if report:
                raise ValueError(f"{self.option} {self.path} does not fit the model:\n{report}")
            model.load_state_dict(state, strict=False)
        else:
            load_avhubert_checkpoint(self.path, model.encoders["video"])
        logging.info(f"{self.option}: loaded {self.path}")


def in_parts(key: str, parts: Optional[Collection[str]]) -> bool:
    """Whether a model state ``key`` (or key prefix) lies in one of
    ``parts``, top-level module names of the model (``frontend``,
    ``encoders``, ...); None: the whole model, every key."""
    return parts is None or key.split(".")[0] in parts


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


def frozen_by(key: str, freeze_param: Iterable[str]) -> bool:
    """ESPnet's --freeze_param rule: ``key`` is frozen when it is one of the
    names or lies under ``name.``."""
    return any(key == name or key.startswith(name + ".") for name in freeze_param)


def freeze(model: torch.nn.Module, names: Iterable[str]) -> None:
    """ESPnet's --freeze_param applied to ``model``."""
    names = list(names)
    for key, param in model.named_parameters():
        if frozen_by(key, names):
            param.requires_grad_(False)


class SourceLocator:
    """Where the pretrained sources of a config (``args``, read from
    ``config_file``) are on this machine: at ``pretrained_dirs`` ({option:
    path}) where given; else, for a packed config, where its reference's
    weights are found (``find_pretrained``) or its copy in the zip; else at
    the config's path. An option of ``pretrained_dirs`` that the config does
    not name is a ValueError naming the config file."""

    def __init__(
        self,
        args: argparse.Namespace,
        config_file: Union[Path, str],
        pretrained_dirs: Optional[Dict[str, str]],
    ):
        self.given = dict(pretrained_dirs or {})
        options = [s.option for s in pretrained_sources(args)]
        unknown = sorted(set(self.given) - set(options))
        if unknown:
            raise ValueError(
                f"{config_file} names no pretrained source {', '.join(unknown)} "
                f"(its sources: {', '.join(options) or 'none'})"
            )
        self.references = {r["option"]: r for r in getattr(args, "pretrained_references", None) or []}

    def locate(self, source: PretrainedSource) -> PretrainedSource:
        """``source`` with the path of its place on this machine."""
        reference = self.references.get(source.option)
        if reference is not None and "packed" not in reference:
            path = find_pretrained(reference, self.given.get(source.option))
        else:
            path = self.given.get(source.option) or (reference or {}).get("packed") or source.path
        return dataclasses.replace(source, path=path)


def record_pretrained(output_dir: Union[Path, str], sources: Iterable[PretrainedSource]) -> None:
    """Writes ``<output_dir>/pretrained_fingerprints.json``: per source, its
    option, its place and the size and sha256 of its weight files, the
    form of a packed model's references (``espnet_mtsk.hf_folder``)."""
    record = [
        {"option": s.option, "original": str(Path(s.path).resolve()), **weights_record(Path(s.path))}
        for s in sources
    ]
    path = Path(output_dir) / PRETRAINED_RECORD
    write_lines(path, [json.dumps(record, indent=1)])
    logging.info(f"Recorded the weights of {', '.join(r['option'] for r in record)} in {path}")


def check_pretrained(
    folder: Union[Path, str], sources: Sequence[PretrainedSource], accept: bool = False
) -> None:
    """Compares ``sources``, at their place on this machine, with the
    record of the training in ``folder`` (``record_pretrained``). A recorded
    source whose weight files differ in size or sha256 is a ValueError that
    names its option, its place and the files; with ``accept``, a warning.
    Nothing is checked where ``folder`` has no record (a training from
    before records, an unpacked model, whose references are checked when
    found)."""
    path = Path(folder) / PRETRAINED_RECORD
    if not path.is_file():
        return
    try:
        recorded = {r["option"]: r for r in json.loads(path.read_text())}
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is not a record of pretrained weights: {e!r}") from e
    changed = []
    for source in sources:
        reference = recorded.get(source.option)
        if reference is None:
            continue
        problems = differences(reference, Path(source.path), "the training")
        if problems:
            place = str(Path(source.path).resolve())
            if place != reference["original"]:
                place += f" (the training used {reference['original']})"
            changed.append(f"  {source.option}: {place}: {'; '.join(problems)}")
    if not changed:
        return
    message = (
        f"Pretrained weights differ from those the training in {folder} started from "
        f"(recorded in {path}):\n" + "\n".join(changed)
    )
    if accept:
        logging.warning(f"{message}\nUsing them as they are now (accept_pretrained_changes).")
        return
    raise ValueError(
        f"{message}\nThe frozen weights its checkpoints leave out would not be the ones it "
        "trained with. Put the original weights back, or pass --accept_pretrained_changes "
        "true (Python: accept_pretrained_changes=True) to use them as they are now."
    )


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
    model: torch.nn.Module,
    model_file: Union[Path, str],
    may_be_missing: Iterable[str] = (),
    parts: Optional[Collection[str]] = None,
) -> None:
    """Loads a state dict into ``model``; any mismatch is a ValueError
    naming the file.

    ``may_be_missing``: keys the file need not hold (``pretrained_keys``:
    those the pretrained sources filled). ``parts``: where ``model`` is
    some parts of the whole model built alone (``in_parts``), the file's
    keys outside them are left alone.
    """
    state = {k: v for k, v in read_state(model_file).items() if in_parts(k, parts)}
    skip = set(may_be_missing)
    own = {k: v for k, v in model.state_dict().items() if k not in skip or k in state}
    report = _mismatches(own, state)
    if report:
        raise ValueError(f"Checkpoint {model_file} does not fit the model of its config:\n{report}")
    model.load_state_dict(state, strict=False)
    logging.info(f"Loaded {model_file}")
