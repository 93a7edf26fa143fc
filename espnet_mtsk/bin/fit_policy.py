#!/usr/bin/env python3
"""Fits the per-utterance scale policy (``espnet_mtsk.decoding.policy_fit``)
on a noisy dev set that ``avsr_inference --scales ...`` decoded at every scale.

    python -m espnet_mtsk.bin.fit_policy --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.ave.pth --data_dir dump/raw/dev_noisy \\
        --utt2condition data/dev_noisy/utt2condition \\
        --decode_dir exp/x/decode/dev_noisy --output exp/x/policy.json \\
        [--estimator_dirs dump/raw/train_noisy]
"""

import argparse
import logging
from pathlib import Path

from espnet2.utils.types import str_or_none

from espnet_mtsk.cli import add_pretrained_arguments
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.decoding.policy_fit import __doc__ as METHOD, fit_policy


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__ + "\n" + METHOD,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", required=True)
    parser.add_argument("--asr_model_file", required=True)
    add_pretrained_arguments(parser)
    parser.add_argument("--data_dir", type=Path, required=True, help="holds wav.scp, text and utt2spk")
    parser.add_argument("--utt2condition", type=Path, required=True, help="<utt> <condition> lines")
    parser.add_argument("--estimator_dirs", type=Path, nargs="*", default=[],
                        help="more data dirs (wav.scp, utt2condition; other speakers) whose audio "
                        "trains the condition estimate too; they need no decoding")
    parser.add_argument("--decode_dir", type=Path, required=True,
                        help="holds <scale>/1best_recog/{text,num_tokens,score,speech_seconds} for every scale")
    parser.add_argument("--scales", nargs="+", default=None, help="default: every scale of the model")
    parser.add_argument("--output", type=Path, required=True, help="policy.json to write")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--components", type=int, nargs="+", default=[8, 16, 32],
                        help="PCA components of the pooled states tried")
    parser.add_argument("--regularisation", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="the logistic regression's C values tried")
    parser.add_argument("--tradeoffs", type=int, default=80, help="tradeoff values tried")
    parser.add_argument("--set_name", type=str_or_none, default=None)
    return parser


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    avsr = AVSR2Text(args.asr_train_config, args.asr_model_file, pretrained_dirs=dict(args.pretrained_dir),
                     accept_pretrained_changes=args.accept_pretrained_changes)
    policy = fit_policy(avsr, args.data_dir, args.utt2condition, args.decode_dir, args.scales, args.estimator_dirs,
                        args.batch_size, args.components, args.regularisation, args.tradeoffs, args.set_name)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    policy.save(args.output)
    for p in policy.points:
        logging.info(f"tradeoff {p.tradeoff:.4g}, threshold {p.threshold}: "
                     f"{p.tokens_per_sec:.2f} tokens/s, WER {p.wer:.2f}% on {policy.fit_set}")
    logging.info(f"wrote {args.output}")


if __name__ == "__main__":
    main()
