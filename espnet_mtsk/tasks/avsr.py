"""The ESPnet2 task: every component is a ClassChoices entry built from YAML.

``python -m espnet_mtsk.bin.avsr_train --help`` lists the choices; a config
picks one class per group and gives its keyword arguments in ``<group>_conf``.
"""

import argparse
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Tuple, Union

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
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import float_or_none, str2bool, str_or_none
from typeguard import typechecked

import espnet_mtsk.data.encoded  # noqa: F401  (registers the "encoded" data type)
import espnet_mtsk.data.video  # noqa: F401  (registers the "video" data type)
from espnet_mtsk.compress import AbsCompressor, AvgPoolCompressor, StackCompressor
from espnet_mtsk.data.augment import DEFAULT_DB_RANGE
from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.data.preprocess import AVSRPreprocessor
from espnet_mtsk.encoders.avhubert import AVHubertVideoEncoder
from espnet_mtsk.encoders.whisper import HFWhisperEncoder
from espnet_mtsk.llm.abs_llm import AbsLLM
from espnet_mtsk.llm.causal_lm import HFCausalLM
from espnet_mtsk.llm.lora import LoRAStrategy, MSLoRA, MSSLoRA, NoLoRA, SSLoRA
from espnet_mtsk.model import ESPnetMTSKModel
from espnet_mtsk.scales import MODES
from espnet_mtsk.tasks.checkpoint import SourceLocator, chosen, pretrained_sources
from espnet_mtsk.tasks.from_file import ENCODER_PARTS, Encoders, load_built, pointed_at, read_config
from espnet_mtsk.tasks.trainer import AVSRTrainer

# ClassChoices(name, classes, type_check, default, optional): optional
# choices take "none" on the command line.
frontend_choices = ClassChoices("frontend", dict(default=DefaultFrontend), AbsFrontend, None, True)
normalize_choices = ClassChoices("normalize", dict(utterance_mvn=UtteranceMVN), AbsNormalize, None, True)
audio_encoder_choices = ClassChoices(
    "audio_encoder", dict(whisper=HFWhisperEncoder, conformer=ConformerEncoder), AbsEncoder, None, True
)
video_encoder_choices = ClassChoices("video_encoder", dict(avhubert=AVHubertVideoEncoder), AbsEncoder, None, True)
compressor_choices = ClassChoices(
    "compressor", dict(avgpool=AvgPoolCompressor, stack=StackCompressor), AbsCompressor, "avgpool"
)
llm_choices = ClassChoices("llm", dict(causal_lm=HFCausalLM), AbsLLM, "causal_lm")
# "none": no adapter, the whole LLM trains (tiny models).
lora_choices = ClassChoices("lora", dict(ms=MSLoRA, ss=SSLoRA, mss=MSSLoRA), LoRAStrategy, "ms", True)


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
            "--noise_apply_prob",
            type=float,
            default=0.5,
            help="Probability of adding noise to a training utterance",
        )
        group.add_argument(
            "--noise_db_range",
            type=str,
            default=DEFAULT_DB_RANGE,
            help="SNR range (dB) of the training noise, 'low_high' as ESPnet "
            "writes it (e.g. -5_20), or one value",
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
        group.add_argument(
            "--accept_pretrained_changes",
            type=str2bool,
            default=False,
            help="Resume although the weights of a pretrained folder or file of the "
            "config differ from those the training started from (recorded in "
            "<output_dir>/pretrained_fingerprints.json)",
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
        cls, args: argparse.Namespace, train: bool, text: bool = True
    ) -> Optional[Callable[[str, Dict[str, np.array]], Dict[str, np.ndarray]]]:
        """ESPnet's preprocessor of a config (None without
        ``use_preprocessor``); with ``text`` False, one that tokenises no
        transcript and reads no LLM folder."""
        if not args.use_preprocessor:
            return None
        return AVSRPreprocessor(
            train=train,
            llm_dir=args.llm_conf["model_dir"] if text else None,
            av_tolerance=args.av_tolerance,
            noise_scp=getattr(args, "noise_scp", None),
            noise_db_range=getattr(args, "noise_db_range", DEFAULT_DB_RANGE),
            noise_apply_prob=getattr(args, "noise_apply_prob", 0.5),
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
        if chosen(getattr(args, "normalize", None)) is not None:
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
        return ESPnetMTSKModel(
            llm=llm_choices.get_class(args.llm)(**args.llm_conf),
            compressor=compressor_choices.get_class(args.compressor)(
                **args.compressor_conf
            ),
            lora=(lora_choices.get_class(chosen(args.lora)) or NoLoRA)(**args.lora_conf),
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
        accept_pretrained_changes: bool = False,
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
        says where a source is here (``SourceLocator``).

        The checkpoint is read with ``weights_only=True``; a key that it
        lacks and no source fills, a key the model lacks or a mis-shaped one
        is an error that names the file and lists the differences. Where the
        checkpoint's folder holds the record of its training
        (``check_pretrained``), a source filling what it lacks whose weights
        differ from those the training started from is an error, unless
        ``accept_pretrained_changes``. Returns the model and the config,
        pointing at the sources as found here.
        """
        config_file, args = read_config(config_file, model_file)
        locator = SourceLocator(args, config_file, pretrained_dirs)
        if model_file is None:
            # As training builds it: from every source but the init_param
            # files, which ESPnet loads into the built model.
            located = [locator.locate(s) for s in pretrained_sources(args) if not s.is_init_param]
            build_args = pointed_at(args, located)
            model = cls.build_model(build_args)
        else:
            model, build_args = load_built(
                args, locator, Path(model_file), accept_pretrained_changes, cls.build_model
            )
        model.to(device)
        return model, build_args

    @classmethod
    @typechecked
    def build_encoders_from_file(
        cls,
        config_file: Optional[Union[Path, str]],
        model_file: Union[Path, str],
        device: str = "cpu",
        pretrained_dirs: Optional[Dict[str, str]] = None,
        accept_pretrained_changes: bool = False,
    ) -> Tuple[Encoders, argparse.Namespace]:
        """A trained model's audio front end and encoders alone
        (``Encoders``), loaded as ``build_model_from_file`` loads the whole
        model, from the same arguments, but without building or reading
        the LLM: the checkpoint's ``frontend.*``, ``normalize.*`` and
        ``encoders.*`` keys strictly (its other keys are left alone), the
        pretrained sources of these parts filling what it lacks and checked
        against the training's record. A mode whose encoder the config does
        not build is a ValueError naming the config file. Returns the
        encoders (in training mode, as built) and the config, pointing at
        the sources read as found here."""
        config_file, args = read_config(config_file, model_file)
        # A config written by hand may leave the mode to the model's default.
        mode = {**get_default_kwargs(ESPnetMTSKModel), **(args.model_conf or {})}["mode"]

        def build(build_args: argparse.Namespace) -> Encoders:
            parts = cls.build_encoders(build_args)
            for modality in MODES[mode]:
                if f"{modality}_encoder" not in parts:
                    raise ValueError(f"{config_file}: mode '{mode}' needs a {modality}_encoder")
            return Encoders(parts, MODES[mode])

        locator = SourceLocator(args, config_file, pretrained_dirs)
        encoders, build_args = load_built(
            args, locator, Path(model_file), accept_pretrained_changes, build, ENCODER_PARTS
        )
        encoders.to(device)
        return encoders, build_args
