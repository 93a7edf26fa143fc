#!/usr/bin/env python3
"""Stage 14-15: pack a trained model for espnet_model_zoo (``espnet_mtsk.tasks.pack``), and unpack it."""

import argparse
from pathlib import Path

from espnet2.main_funcs.pack_funcs import unpack
from espnet2.utils.types import str2bool

from espnet_mtsk.cli import key_value
from espnet_mtsk.tasks.pack import INLINE_MAX_MB, __doc__ as PACK_DOC, pack_model


def main(cmd=None):
    parser = argparse.ArgumentParser(description=PACK_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path)
    parser.add_argument("--asr_model_file", type=Path)
    parser.add_argument("--outpath", type=Path)
    parser.add_argument("--option", type=Path, action="append", default=[])
    parser.add_argument(
        "--inline_max_mb", type=float, default=INLINE_MAX_MB,
        help="pretrained folders and files up to this size go inside the zip; "
        "larger ones are referenced with a fingerprint",
    )
    parser.add_argument(
        "--origin", type=key_value, action="append", default=[], metavar="OPTION=HUB_ID_OR_URL",
        help="where a referenced source can be downloaded, e.g. "
        "llm_conf.model_dir=meta-llama/Llama-3.2-1B (default: the hub id of a "
        "folder in huggingface_hub's cache)",
    )
    parser.add_argument(
        "--accept_pretrained_changes", type=str2bool, default=False,
        help="pack although the weights of a pretrained folder or file differ from those "
        "the training started from (recorded in pretrained_fingerprints.json beside "
        "--asr_model_file)",
    )
    parser.add_argument("--unpack", type=Path, help="a packed zip to unpack")
    parser.add_argument("--outdir", type=Path, help="where --unpack writes")
    args = parser.parse_args(cmd)
    if args.unpack is not None:
        # Printed as shell assignments for the recipe to eval.
        for key, value in unpack(args.unpack, args.outdir).items():
            print(f"{key}={value}")
    else:
        pack_model(
            args.asr_train_config, args.asr_model_file, args.outpath, args.option,
            args.inline_max_mb, dict(args.origin), args.accept_pretrained_changes,
        )


if __name__ == "__main__":
    main()
