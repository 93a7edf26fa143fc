#!/usr/bin/env python3
"""Decode a model of ESPnet's ASR task (an espnet_model_zoo name, a local
zip, or config + checkpoint) over a data set with ESPnet's own
``Speech2Text`` and beam search, writing what ``espnet_mtsk.reporting.scoring`` reads:

    python -m espnet_mtsk.bin.zip_inference --model_tag exp/x/x.zip \\
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound \\
        --output_dir exp/zip/decode/test/x

``<output_dir>/1best_recog/{text,num_tokens,speech_seconds,decode_seconds}``
(``num_tokens``: the encoder frames the decoder attends to, its cost as the
Matryoshka model's audio-visual tokens are the LLM's) and
``<output_dir>/model.json`` (parameters, trainable ones: those its training
config's ``freeze_param`` leaves). Utterances are decoded one at a time, as
``espnet2.bin.asr_inference`` does. Waveforms give their own duration;
features (``kaldi_ark``, ``npy``) need ``--speech_seconds``, and
``--extra_seconds`` adds per-utterance time already spent on them (frozen
encoders that made the features) to the decoding time.
"""

import json
import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.fileio.read_text import read_2columns_text
from espnet2.utils import config_argparse
from espnet2.utils.types import str2triple_str, str_or_none

from espnet_mtsk.cli import model_source, run_logged
from espnet_mtsk.fileio import SAMPLE_RATE
from espnet_mtsk.tasks.checkpoint import frozen_by


def count_parameters(model: torch.nn.Module, freeze_param: Sequence[str]) -> Dict[str, int]:
    """All parameters, and those ``freeze_param`` does not freeze."""
    total = trainable = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if not frozen_by(name, freeze_param):
            trainable += param.numel()
    return {"parameters": total, "trainable_parameters": trainable}


def read_seconds(path: Optional[str], option: str) -> Optional[Dict[str, float]]:
    if path is None:
        return None
    try:
        return {k: float(v) for k, v in read_2columns_text(path).items()}
    except ValueError as e:
        raise ValueError(f"{option} {path}: expected 'utt seconds' lines ({e})") from e


def inference(args) -> None:
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks.asr import ASRTask

    speech2text = Speech2Text.from_pretrained(
        **model_source(args),
        beam_size=args.beam_size,
        ctc_weight=args.ctc_weight,
        lm_weight=args.lm_weight,
        penalty=args.penalty,
        maxlenratio=args.maxlenratio,
        minlenratio=args.minlenratio,
        nbest=1,
    )
    train_args = speech2text.asr_train_args
    speech_seconds = read_seconds(args.speech_seconds, "--speech_seconds")
    extra_seconds = read_seconds(args.extra_seconds, "--extra_seconds") or {}
    frames: List[int] = []
    # The encoder's output length is what the decoder attends to; Speech2Text
    # does not return it, so a hook on the encoder reads it.
    speech2text.asr_model.encoder.register_forward_hook(lambda m, i, out: frames.append(int(out[1][0])))
    loader = ASRTask.build_streaming_iterator(
        args.data_path_and_name_and_type,
        dtype="float32",
        batch_size=1,
        key_file=args.key_file,
        num_workers=1,
        preprocess_fn=ASRTask.build_preprocess_fn(train_args, False),
        collate_fn=ASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=False,
        inference=True,
    )
    out_dir = Path(args.output_dir)
    with DatadirWriter(out_dir) as writer:
        for (key,), batch in loader:
            speech = batch["speech"][0]
            if speech_seconds is not None:
                if key not in speech_seconds:
                    raise ValueError(f"--speech_seconds {args.speech_seconds} lacks utterance '{key}'")
                seconds = speech_seconds[key]
            elif speech.dim() == 1:
                seconds = len(speech) / SAMPLE_RATE
            else:
                raise ValueError(f"{key}: features {tuple(speech.shape)} need --speech_seconds (the speech duration)")
            start = time.perf_counter()
            text = speech2text(speech)[0][0] or ""
            wall = time.perf_counter() - start + extra_seconds.get(key, 0.0)
            best = writer["1best_recog"]
            best["text"][key] = text
            best["num_tokens"][key] = str(frames.pop())
            best["speech_seconds"][key] = f"{seconds:.3f}"
            best["decode_seconds"][key] = f"{wall:.4f}"
    info = {"model": args.model_tag or args.asr_model_file}
    info.update(count_parameters(speech2text.asr_model, getattr(train_args, "freeze_param", None) or []))
    (out_dir / "model.json").write_text(json.dumps(info, indent=1) + "\n")


def get_parser() -> config_argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(
        description=__doc__, formatter_class=config_argparse.argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_tag", type=str_or_none, default=None, help="espnet_model_zoo name or local zip")
    parser.add_argument("--asr_train_config", type=str_or_none, default=None)
    parser.add_argument("--asr_model_file", type=str_or_none, default=None)
    parser.add_argument("--data_path_and_name_and_type", type=str2triple_str, action="append", required=True)
    parser.add_argument("--key_file", type=str_or_none, default=None)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--speech_seconds", type=str_or_none, default=None, help="'utt seconds' lines")
    parser.add_argument("--extra_seconds", type=str_or_none, default=None, help="'utt seconds' lines")
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--beam_size", type=int, default=10)
    parser.add_argument("--ctc_weight", type=float, default=0.3)
    parser.add_argument("--lm_weight", type=float, default=0.0)
    parser.add_argument("--penalty", type=float, default=0.0)
    parser.add_argument("--maxlenratio", type=float, default=0.0)
    parser.add_argument("--minlenratio", type=float, default=0.0)
    return parser


def main(cmd=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    args = get_parser().parse_args(cmd)
    if args.model_tag is None and args.asr_model_file is None:
        logging.error("give --model_tag (a zoo name or zip) or --asr_train_config and --asr_model_file")
        return 1
    return run_logged(lambda: inference(args))


if __name__ == "__main__":
    sys.exit(main())
