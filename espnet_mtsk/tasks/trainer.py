"""ESPnet's trainer for this task: atomic checkpoint files,
``--save_strategy required_grad_only`` for this task's LoRA, and the record
of the pretrained weights a training started from."""

import argparse
import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import List

import torch
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.trainer import Trainer, TrainerOptions

from espnet_mtsk.fileio import atomic_path
from espnet_mtsk.tasks.checkpoint import (
    PretrainedSource,
    check_pretrained,
    leave_out_of_state_dict,
    pretrained_keys,
    pretrained_sources,
    record_pretrained,
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


def rank_differences(model: torch.nn.Module) -> List[str]:
    """The trainable parameters whose values differ between the ranks of
    the process group (empty: identical everywhere), with the largest
    difference. Every rank calls it. Bit patterns are compared, so NaNs
    that agree agree; one parameter at a time, so no rank holds more than
    a parameter's copies."""
    differ = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        value = param.detach().float()
        bits = value.view(torch.int32)
        high, low = bits.clone(), bits.clone()
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MIN)
        if not torch.equal(high, low):
            spread = (high.view(torch.float32) - low.view(torch.float32)).abs().nan_to_num(float("inf"))
            differ.append(f"{name} (by {spread.max().item():.3g})")
    return differ


@dataclasses.dataclass
class AVSRTrainerOptions(TrainerOptions):
    pretrained_sources: List[PretrainedSource]
    accept_pretrained_changes: bool


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

    A training that starts afresh records the weights of its sources in
    ``<output_dir>/pretrained_fingerprints.json`` (``record_pretrained``);
    resuming checks the sources that fill what ``checkpoint.pth`` leaves
    out against it (``check_pretrained``), and stops where one changed
    unless ``--accept_pretrained_changes true``.
    """

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> AVSRTrainerOptions:
        options = super().build_options(args)
        values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
        return AVSRTrainerOptions(
            **values,
            pretrained_sources=pretrained_sources(args),
            accept_pretrained_changes=args.accept_pretrained_changes,
        )

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
        if distributed_option.distributed and model.scales_per_step < len(model.scales):
            # Scales left out of a step leave their projectors (and with
            # SS/MSS-LoRA their adapters) without gradients, which DDP
            # rejects unless it looks for them.
            if not trainer_options.unused_parameters:
                logging.info("scales_per_step: DDP finds the parameters a step does not use (--unused_parameters true)")
            trainer_options.unused_parameters = True
        sources = trainer_options.pretrained_sources
        # Per source, the keys that checkpoints leave out for it to fill.
        left_out = {source: set() for source in sources}
        if trainer_options.save_strategy == "required_grad_only" and not trainer_options.use_adapter:
            left_out = {source: pretrained_keys(model, [source]) for source in sources}
            keys = set().union(*left_out.values())
            leave_out_of_state_dict(model, keys)
            state = model.state_dict(keep_vars=True)
            kept = sum(v.numel() * v.element_size() for v in state.values())
            logging.info(
                f"save_strategy required_grad_only: checkpoints hold {len(state)} tensors "
                f"({kept / 1e6:.1f} MB); {len(keys)} others come from "
                + ", ".join(f"{s.option} ({s.path})" for s in sources)
            )
        output_dir = Path(trainer_options.output_dir)
        # The condition on which super().run resumes.
        if trainer_options.resume and (output_dir / "checkpoint.pth").exists():
            leaned_on = [source for source, keys in left_out.items() if keys]
            check_pretrained(output_dir, leaned_on, trainer_options.accept_pretrained_changes)
        elif not distributed_option.distributed or distributed_option.dist_rank == 0:
            record_pretrained(output_dir, sources)
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

    @classmethod
    def train_one_epoch(cls, model: torch.nn.Module, distributed_option: DistributedOption, **kwargs) -> bool:
        """ESPnet's epoch of training; with several ranks, then a check that
        they still hold the same trained parameters (DDP keeps them equal
        only for the parameters that were trainable when it was built):
        a RuntimeError naming those that differ."""
        all_steps_are_invalid = super().train_one_epoch(model=model, distributed_option=distributed_option, **kwargs)
        if distributed_option.distributed:
            differ = rank_differences(model)
            if differ:
                raise RuntimeError(
                    f"The {distributed_option.dist_world_size} ranks hold different values of "
                    f"{len(differ)} trained parameters: {', '.join(differ[:5])}"
                )
            logging.info(f"The {distributed_option.dist_world_size} ranks hold the same trained parameters")
        return all_steps_are_invalid
