#!/usr/bin/env python3
"""Stage 14-15: pack a trained model for espnet_model_zoo, and unpack it.

The packed zip is ESPnet's format (``meta.yaml`` with ``asr_train_config``
and ``asr_model_file``), so ``espnet_model_zoo``'s ``ModelDownloader`` and
``AVSR2Text.from_pretrained("model.zip")`` unpack it. The HF folders the
config names (``model_dir`` of the LLM, of Whisper...) travel inside the zip;
the packed config names their ``config.json``, because espnet_model_zoo
rewrites only file paths to their unpacked place, and our loaders accept a
folder's ``config.json`` for the folder.
"""

import argparse
from pathlib import Path
from typing import Any, List

import yaml
from espnet2.main_funcs.pack_funcs import pack, unpack


def _point_at_config_json(value: Any, folders: List[Path]) -> Any:
    """Replaces every ``model_dir`` folder in a config by its config.json."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "model_dir" and isinstance(item, str) and Path(item).is_dir():
                folders.append(Path(item))
                out[key] = str(Path(item) / "config.json")
            else:
                out[key] = _point_at_config_json(item, folders)
        return out
    if isinstance(value, list):
        return [_point_at_config_json(v, folders) for v in value]
    return value


def pack_model(config: Path, model_file: Path, outpath: Path, options: List[Path]) -> None:
    folders: List[Path] = []
    conf = _point_at_config_json(yaml.safe_load(config.read_text()), folders)
    packed_config = config.with_name("packed_config.yaml")
    packed_config.write_text(yaml.safe_dump(conf, sort_keys=False))
    pack(
        files={"asr_model_file": model_file},
        yaml_files={"asr_train_config": packed_config},
        outpath=outpath,
        option=[*folders, *options],
    )


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asr_train_config", type=Path)
    parser.add_argument("--asr_model_file", type=Path)
    parser.add_argument("--outpath", type=Path)
    parser.add_argument("--option", type=Path, action="append", default=[])
    parser.add_argument("--unpack", type=Path, help="a packed zip to unpack")
    parser.add_argument("--outdir", type=Path, help="where --unpack writes")
    args = parser.parse_args(cmd)
    if args.unpack is not None:
        # Printed as shell assignments for the recipe to eval.
        for key, value in unpack(args.unpack, args.outdir).items():
            print(f"{key}={value}")
    else:
        pack_model(args.asr_train_config, args.asr_model_file, args.outpath, args.option)


if __name__ == "__main__":
    main()
