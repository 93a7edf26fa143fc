"""ESPnet's trainer for this task: atomic checkpoint files, and
``--save_strategy required_grad_only`` for this task's LoRA."""

import argparse
import contextlib
import dataclasses
import logging
import os
from typing import List

import torch
from espnet2.train.trainer import Trainer, TrainerOptions

from espnet_mtsk.fileio import atomic_path
from espnet_mtsk.tasks.checkpoint import (
    PretrainedSource,
    leave_out_of_state_dict,
    pretrained_keys,
    pretrained_sources,
)


@contextlib.contextmanager
def atomic_torch_save():
    """Within it, ``torch.save`` to a path writes a temporary file beside it
    and renames it into place: ESPnet's trainer overwrites checkpoint.pth in
    place, so a training killed while saving would lose its only checkpoint."""
    save = torch.save

    def atomic_save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return save(obj, f, *args, **kwargs)
        with atomic_path(f) as tmp:
            save(obj, tmp, *args, **kwargs)
            with open(tmp, "rb") as written:
                os.fsync(written.fileno())

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
