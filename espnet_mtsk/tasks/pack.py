"""A trained model packed for espnet_model_zoo (``pack_model``); the CLI
of recipe stages 14-15 is ``espnet_mtsk.bin.pack``.

The packed zip is ESPnet's format (``meta.yaml`` with ``asr_train_config``
and ``asr_model_file``), so ``espnet_model_zoo``'s ``ModelDownloader`` and
``AVSR2Text.from_pretrained("model.zip")`` unpack it.

The pretrained folders and files the config names (``llm_conf.model_dir``,
``audio_encoder_conf.model_dir``, ``video_encoder_conf.checkpoint``,
``init_param``) fill what a ``save_strategy: required_grad_only`` checkpoint
leaves out. Those up to ``--inline_max_mb`` (200 MB by default: the
stand-ins of the toy recipes) travel inside the zip; the packed config names
a file inside each (a folder's ``config.json``), because espnet_model_zoo
rewrites only file paths to their unpacked place, and our loaders accept a
folder's ``config.json`` for the folder. Larger ones (Llama, Whisper,
AV-HuBERT) are referenced: the packed config's ``pretrained_references``
records, per config option, the path, the origin (a hub id found in
huggingface_hub's cache layout, or ``--origin OPTION=HUB_ID_OR_URL``) and the
size and sha256 of each weight file. Loading the unpacked model finds the
same weights there, in the hub cache or at ``--pretrained_dir OPTION=PATH``,
or stops naming the option, what differs and where to get it
(``espnet_mtsk.hf_folder.find_pretrained``). A model file beside the record
of its training (``pretrained_fingerprints.json``) is packed only with the
weights that training started from, unless ``--accept_pretrained_changes
true``.
"""

import argparse
import contextlib
import copy
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml
from espnet2.main_funcs.pack_funcs import pack

from espnet_mtsk.hf_folder import hub_origin, total_size, weights_record
from espnet_mtsk.tasks.checkpoint import check_pretrained, pretrained_sources
from espnet_mtsk.tasks.from_file import set_option

INLINE_MAX_MB = 200.0


def _member(path: Path, root: Path) -> str:
    """The name ``pack`` run in ``root`` gives ``path`` inside the zip."""
    path = path.resolve()
    return str(path.relative_to(root) if path.is_relative_to(root) else path).lstrip("/")


def _packed_file(path: Path) -> Path:
    """The file a packed config names for ``path``: the file itself, or a
    file of the folder (its config.json where it has one)."""
    if path.is_file():
        return path
    config = path / "config.json"
    return config if config.is_file() else min(f for f in path.rglob("*") if f.is_file())


def packed_config(
    config: Dict, inline_max_mb: float, origins: Dict[str, str], root: Path
) -> Tuple[Dict, List[Path]]:
    """The config to pack, where small sources point into the zip and every
    source is listed in ``pretrained_references`` (the large ones with their
    fingerprints), and the small sources to put in the zip, for ``pack``
    run in ``root``."""
    args = argparse.Namespace(**copy.deepcopy(config))
    references, inline = [], []
    unknown = sorted(set(origins) - {s.option for s in pretrained_sources(args)})
    if unknown:
        # A recipe gives the origins of all its models; a config may use some.
        logging.warning(f"--origin {', '.join(unknown)}: the config names no such pretrained source")
    for source in pretrained_sources(args):
        path = Path(source.path)
        if not path.exists():
            raise FileNotFoundError(
                f"{source.option}: {path} not found; packing needs every pretrained folder "
                "and file the config names"
            )
        reference = {"option": source.option, "original": str(path.resolve()), "suffix": source.suffix}
        if total_size(path) <= inline_max_mb * 2**20:
            member = _member(_packed_file(path), root)
            inline.append(path.resolve())
            reference["packed"] = member
            set_option(args, source.option, member + source.suffix)
        else:
            origin, revision = hub_origin(path)
            reference.update(
                weights_record(path),
                origin=origins.get(source.option, origin),
                revision=revision if source.option not in origins else None,
            )
        references.append(reference)
    out = vars(args)
    out["pretrained_references"] = references
    return out, inline


def pack_model(
    config: Path,
    model_file: Path,
    outpath: Path,
    options: List[Path],
    inline_max_mb: float = INLINE_MAX_MB,
    origins: Optional[Dict[str, str]] = None,
    accept_pretrained_changes: bool = False,
) -> None:
    """Packs ``config`` and ``model_file`` (and the files of ``options``)
    into the zip ``outpath`` (see the module's description). Where the
    model file's folder holds the record of its training, a source whose
    weights differ from those the training started from is a ValueError,
    unless ``accept_pretrained_changes`` (``check_pretrained``)."""
    files = [p.resolve() for p in (config, model_file, *options)]
    # ESPnet's unpack relocates the config and the model file only when they
    # were packed under relative paths: pack from their common folder.
    root = Path(os.path.commonpath([f.parent for f in files]))
    values = yaml.safe_load(config.read_text())
    sources = pretrained_sources(argparse.Namespace(**values))
    check_pretrained(files[1].parent, sources, accept_pretrained_changes)
    conf, inline = packed_config(values, inline_max_mb, origins or {}, root)
    packed = files[0].with_name("packed_config.yaml")
    packed.write_text(yaml.safe_dump(conf, sort_keys=False))
    outpath = outpath.resolve()
    with contextlib.chdir(root):
        pack(
            files={"asr_model_file": files[1]},
            yaml_files={"asr_train_config": packed},
            outpath=outpath,
            option=[*inline, *files[2:]],
        )
