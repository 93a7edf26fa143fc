#!/usr/bin/env python3
"""What the recipe scripts ask of a training config, read with PyYAML (a
``none`` choice is no choice, as for the task):

    python -m local.train_config CONFIG                # the modalities whose encoder it names
    python -m local.train_config CONFIG --to_pretrain  # of those, the ones its mode reads
                                                       # that load no pretrained weights (stage 9)

prints the modalities (``audio``, ``video``) on one line, space-separated.
"""

import argparse
from typing import List

import yaml

from espnet_mtsk.scales import MODES
from espnet_mtsk.tasks.checkpoint import PRETRAINED_OPTIONS, chosen


def read_config(path: str) -> dict:
    """A YAML config -> dict; a ValueError naming the file when it is not a mapping."""
    with open(path, encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict):
        raise ValueError(f"{path}: not a YAML mapping of options")
    return conf


def named_encoders(conf: dict) -> List[str]:
    """The modalities whose encoder the config names (``<modality>_encoder``)."""
    return [m for m in ("audio", "video") if chosen(conf.get(f"{m}_encoder")) is not None]


def loads_pretrained(conf: dict, modality: str) -> bool:
    """Whether the modality's encoder conf holds a pretrained-weights key of
    ``PRETRAINED_OPTIONS`` (Whisper's model_dir, AV-HuBERT's checkpoint),
    even a null one: the paper's configs leave the path to the run script."""
    group = f"{modality}_encoder_conf"
    values = conf.get(group) or {}
    return any(option.split(".")[1] in values for option in PRETRAINED_OPTIONS if option.startswith(group + "."))


def encoders_to_pretrain(conf: dict) -> List[str]:
    """The named encoders that the config's mode reads and that load no
    pretrained weights: the stand-ins stage 9 pre-trains."""
    mode = (conf.get("model_conf") or {}).get("mode", "avsr")
    return [m for m in named_encoders(conf) if m in MODES[mode] and not loads_pretrained(conf, m)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--to_pretrain", action="store_true")
    args = parser.parse_args(argv)
    conf = read_config(args.config)
    print(" ".join(encoders_to_pretrain(conf) if args.to_pretrain else named_encoders(conf)))


if __name__ == "__main__":
    main()
