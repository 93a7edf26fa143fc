#!/usr/bin/env python3
"""Train a Llama-MTSK model: ESPnet's trainer with the AVSR task."""

from espnet_mtsk.tasks.avsr import AVSRTask


def get_parser():
    return AVSRTask.get_parser()


def main(cmd=None):
    """Run ESPnet training, e.g. ``avsr_train --config conf/x.yaml ...``."""
    AVSRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
