"""The ESPnet2 task: every component is a ClassChoices entry built from YAML.

``python -m espnet_mtsk.bin.avsr_train --help`` lists the choices; a config
picks one class per group and gives its keyword arguments in ``<group>_conf``.
"""

import argparse
import contextlib
import copy
import dataclasses
import logging
import os
from pathlib import Path
from typing import Callable, Collection, Dict, Iterable, List, Optional, Set, Tuple, Union

import numpy as np
import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.layers.utterance_mvn import UtteranceMVN
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import float_or_none, str2bool, str_or_none
from typeguard import typechecked

import espnet_mtsk.data.encoded  # noqa: F401  (registers the "encoded" data type)
import espnet_mtsk.data.video  # noqa: F401  (registers the "video" data type)
from espnet_mtsk.compress import AbsCompressor, AvgPoolCompressor, StackCompressor
from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.data.preprocess import AVSRPreprocessor
from espnet_mtsk.encoders.avhubert import AVHubertVideoEncoder
from espnet_mtsk.encoders.avhubert_checkpoint import load_avhubert_checkpoint
from espnet_mtsk.encoders.whisper import HFWhisperEncoder
from espnet_mtsk.hf_folder import find_pretrained
from espnet_mtsk.llm.abs_llm import AbsLLM
from espnet_mtsk.llm.causal_lm import HFCausalLM
from espnet_mtsk.llm.lora import LoRAStrategy, MSLoRA, MSSLoRA, NoLoRA, SSLoRA
from espnet_mtsk.model import ESPnetMTSKModel

frontend_choices = ClassChoices(
    name="frontend",
    classes=dict(default=DefaultFrontend),
    type_check=AbsFrontend,
    default=None,
    optional=True,
)
normalize_choices = ClassChoices(
    name="normalize",
    classes=dict(utterance_mvn=UtteranceMVN),
    type_check=AbsNormalize,
    default=None,
    optional=True,
)
audio_encoder_choices = ClassChoices(
    name="audio_encoder",
    classes=dict(whisper=HFWhisperEncoder, conformer=ConformerEncoder),
    type_check=AbsEncoder,
    default=None,
    optional=True,
)
video_encoder_choices = ClassChoices(
    name="video_encoder",
    classes=dict(avhubert=AVHubertVideoEncoder),
    type_check=AbsEncoder,
    default=None,
    optional=True,
)
compressor_choices = ClassChoices(
    name="compressor",
    classes=dict(avgpool=AvgPoolCompressor, stack=StackCompressor),
    type_check=AbsCompressor,
    default="avgpool",
)
llm_choices = ClassChoices(
    name="llm",
    classes=dict(causal_lm=HFCausalLM),
    type_check=AbsLLM,
    default="causal_lm",
)
lora_choices = ClassChoices(
    name="lora",
    classes=dict(ms=MSLoRA, ss=SSLoRA, mss=MSSLoRA),
    type_check=LoRAStrategy,
    default="ms",
    optional=True,  # "none": no adapter, the whole LLM trains (tiny models)
)


def _none(name: Optional[str]) -> Optional[str]:
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
        if value and _none(getattr(args, conf[: -len("_conf")], None)) is not None:
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


@contextlib.contextmanager
def atomic_torch_save():
    """Within it, ``torch.save`` to a path writes a temporary file beside it
    and renames it into place: ESPnet's trainer overwrites checkpoint.pth in
    place, so a training killed while saving would lose its only checkpoint."""
    save = torch.save

    def atomic_save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        tmp = f"{os.fspath(f)}.tmp"
        save(obj, tmp, *args, **kwargs)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, f)

    torch.save = atomic_save
    try:
        yield
    finally:
        torch.save = save


@dataclasses.dataclass
class AVSRTrainerOptions(TrainerOptions):
    pretrained_sources: List[PretrainedSource]


class AVSRTrainer(Trainer):
    """ESPnet's trainer with atomic checkpoint files, and with
    ``--save_strategy required_grad_only`` working for this task's LoRA
    (ESPnet applies it only with its own ``--use_adapter``).

    ``required_grad_only`` leaves out of ``checkpoint.pth``, the epoch files
    and their averages what the config's pretrained sources fill and training
    leaves as it was (``pretrained_keys``): the frozen LLM, Whisper and
    AV-HuBERT weights and init_param encoders. Every trained weight is saved,
    and so are frozen weights that no source fills. Resuming reads the
    sources again; decoding too (``AVSRTask.build_model_from_file``).
    """

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> AVSRTrainerOptions:
        options = super().build_options(args)
        values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        return AVSRTrainerOptions(**values, pretrained_sources=pretrained_sources(args))

    @classmethod
    def run(
        cls,
        model,
        optimizers,
        schedulers,
        train_iter_factory,
        valid_iter_factory,
        plot_attention_iter_factory,
        trainer_options,
        distributed_option,
    ) -> None:
        if trainer_options.save_strategy == "required_grad_only" and not trainer_options.use_adapter:
            sources = trainer_options.pretrained_sources
            left_out = pretrained_keys(model, sources)
            leave_out_of_state_dict(model, left_out)
            state = model.state_dict(keep_vars=True)
            kept = sum(v.numel() * v.element_size() for v in state.values())
            logging.info(
                f"save_strategy required_grad_only: checkpoints hold {len(state)} tensors "
                f"({kept / 1e6:.1f} MB); {len(left_out)} others come from "
                + ", ".join(f"{s.option} ({s.path})" for s in sources)
            )
        with atomic_torch_save():
            super().run(
                model=model,
                optimizers=optimizers,
                schedulers=schedulers,
                train_iter_factory=train_iter_factory,
                valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options,
                distributed_option=distributed_option,
            )


class AVSRTask(AbsTask):
    """Llama-MTSK: audio / video / audio-visual speech recognition with an LLM."""

    num_optimizers: int = 1
    class_choices_list = [
        frontend_choices,
        normalize_choices,
        audio_encoder_choices,
        video_encoder_choices,
        compressor_choices,
        llm_choices,
        lora_choices,
    ]
    trainer = AVSRTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        group.add_argument(
            "--model_conf",
            action=NestedDictAction,
            default=get_default_kwargs(ESPnetMTSKModel),
            help="mode (asr / vsr / avsr / all), audio_rates, video_rates, "
            "projector_hidden_size",
        )
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument(
            "--use_preprocessor",
            type=str2bool,
            default=True,
            help="Check utterances and tokenise transcripts with the LLM tokenizer",
        )
        group.add_argument(
            "--av_tolerance",
            type=float_or_none,
            default=0.2,
            help="Largest accepted gap between audio and video durations (s)",
        )
        group.add_argument(
            "--noise_scp",
            type=str_or_none,
            default=None,
            help="Noise wav list mixed into training audio on the fly",
        )
        group.add_argument(
            "--noise_snr_range",
            type=float,
            nargs=2,
            default=[-5.0, 20.0],
            help="SNR range (dB) of the training noise",
        )
        group.add_argument(
            "--noise_prob",
            type=float,
            default=0.5,
            help="Probability of adding noise to a training utterance",
        )
        group.add_argument(
            "--video_crop",
            type=int,
            default=0,
            help="Crop video frames (T, H, W) to (T, N, N): a random N x N window "
            "(one per utterance) in training, the centre one otherwise, as "
            "auto-avsr does with its 96x96 mouth crops (88 for the AV-HuBERT "
            "checkpoints). Frames smaller than N are an error; 0: no crop",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    @typechecked
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return AVSRCollateFn()

    @classmethod
    @typechecked
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        return AVSRPreprocessor(
            train=train,
            llm_dir=args.llm_conf["model_dir"],
            av_tolerance=args.av_tolerance,
            noise_scp=getattr(args, "noise_scp", None),
            noise_snr_range=getattr(args, "noise_snr_range", (-5.0, 20.0)),
            noise_prob=getattr(args, "noise_prob", 0.5),
            video_crop=getattr(args, "video_crop", 0) or 0,
        )

    @classmethod
    def required_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        # Which of speech / video is needed depends on model_conf.mode; the
        # model says which one is missing.
        return () if inference else ("text",)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        # *_encoded: a frozen encoder's dumped outputs (data/encoded.py).
        return ("speech", "video", "speech_encoded", "video_encoded")

    @classmethod
    def build_encoders(cls, args: argparse.Namespace) -> Dict[str, torch.nn.Module]:
        """The audio front end (``frontend``, ``normalize``) and the encoders
        (``audio_encoder``, ``video_encoder``) a config names, keyed by those
        names; also used alone to pre-train the encoders."""
        parts: Dict[str, torch.nn.Module] = {}
        input_size = 0
        if getattr(args, "frontend", None) is not None:
            parts["frontend"] = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            input_size = parts["frontend"].output_size()
        if _none(getattr(args, "normalize", None)) is not None:
            parts["normalize"] = normalize_choices.get_class(args.normalize)(
                **args.normalize_conf
            )
        for choices, key in (
            (audio_encoder_choices, "audio_encoder"),
            (video_encoder_choices, "video_encoder"),
        ):
            name = getattr(args, key, None)
            if name is not None:
                size = input_size if key == "audio_encoder" else 0
                conf = getattr(args, f"{key}_conf")
                parts[key] = choices.get_class(name)(input_size=size, **conf)
        return parts

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetMTSKModel:
        parts = cls.build_encoders(args)
        # The embedding rows added for the marker and pad tokens are drawn at
        # random and stay frozen: a fixed seed draws the same ones whenever
        # the model is built, so checkpoints need not hold the LLM's table.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            llm = llm_choices.get_class(args.llm)(**args.llm_conf)
        return ESPnetMTSKModel(
            llm=llm,
            compressor=compressor_choices.get_class(args.compressor)(
                **args.compressor_conf
            ),
            lora=(lora_choices.get_class(_none(args.lora)) or NoLoRA)(**args.lora_conf),
            **parts,
            **args.model_conf,
        )

    @classmethod
    @typechecked
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
        pretrained_dirs: Optional[Dict[str, str]] = None,
    ) -> Tuple[ESPnetMTSKModel, argparse.Namespace]:
        """Builds the model of a config and loads a checkpoint strictly.

        What the checkpoint does not hold comes from the pretrained sources
        the config names (``pretrained_sources``): the LLM and Whisper
        folders are always read; an AV-HuBERT checkpoint or init_param file
        only when the checkpoint lacks what it fills, so a checkpoint with
        every weight (``save_strategy: all``) needs none of them. A packed
        config's references are found and checked on this machine
        (``espnet_mtsk.hf_folder.find_pretrained``); ``pretrained_dirs``
        ({option: path}, e.g. ``{"llm_conf.model_dir": "/data/llama"}``)
        says where a source is here.

        The checkpoint is read with ``weights_only=True``; a key that it
        lacks and no source fills, a key the model lacks or a mis-shaped one
        is an error that names the file and lists the differences. Returns
        the model and the config, pointing at the sources as found here.
        """
        import yaml

        if config_file is None:
            if model_file is None:
                raise ValueError("Give config_file or model_file")
            config_file = Path(model_file).parent / "config.yaml"
        with Path(config_file).open("r", encoding="utf-8") as f:
            args = argparse.Namespace(**yaml.safe_load(f))
        sources = pretrained_sources(args)
        given = dict(pretrained_dirs or {})
        unknown = sorted(set(given) - {s.option for s in sources})
        if unknown:
            raise ValueError(
                f"{config_file} names no pretrained source {', '.join(unknown)} "
                f"(its sources: {', '.join(s.option for s in sources) or 'none'})"
            )
        references = {r["option"]: r for r in getattr(args, "pretrained_references", None) or []}

        def locate(source: PretrainedSource) -> PretrainedSource:
            reference = references.get(source.option)
            if reference is not None and "packed" not in reference:
                path = find_pretrained(reference, given.get(source.option))
            else:
                path = given.get(source.option) or (reference or {}).get("packed") or source.path
            return dataclasses.replace(source, path=path)

        build_args = argparse.Namespace(**copy.deepcopy(vars(args)))
        built = [locate(s) for s in sources if s.option in BUILT_FROM]
        for source in built:
            set_option(build_args, source.option, source.path + source.suffix)
        lazy = [s for s in sources if s.option not in BUILT_FROM]
        if model_file is None:
            for source in lazy:
                if not source.is_init_param:
                    set_option(build_args, source.option, locate(source).path)
            model = cls.build_model(build_args)
            model.to(device)
            return model, build_args
        for source in lazy:
            if not source.is_init_param:
                set_option(build_args, source.option, None)
        build_args.init_param = []
        model = cls.build_model(build_args)
        freeze(model, getattr(args, "freeze_param", None) or [])
        keys = list(model.state_dict())
        filled = list(built)
        unfilled = set(keys) - set(_read_state(model_file))
        for source in built:
            unfilled -= source.provided_keys(keys)
        for source in lazy:
            # The AV-HuBERT file is large: it is located only when needed.
            if not unfilled or not (source.is_init_param or source.provided_keys(keys) & unfilled):
                continue
            source = locate(source)
            provided = source.provided_keys(keys)
            if provided & unfilled:
                source.fill(model)
                filled.append(source)
                unfilled -= provided
        load_checkpoint(model, model_file, pretrained_keys(model, filled))
        model.to(device)
        return model, build_args


def _read_state(model_file: Union[Path, str]) -> Dict[str, torch.Tensor]:
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
    state = _read_state(model_file)
    skip = set(may_be_missing)
    own = {k: v for k, v in model.state_dict().items() if k not in skip or k in state}
    report = _mismatches(own, state)
    if report:
        raise ValueError(f"Checkpoint {model_file} does not fit the model of its config:\n{report}")
    model.load_state_dict(state, strict=False)
    logging.info(f"Loaded {model_file}")
