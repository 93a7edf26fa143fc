#!/usr/bin/env python3
"""Decode with a trained Llama-MTSK model at one chosen scale.

Python API: ``AVSR2Text`` (``AVSR2Text.from_pretrained(model_tag)`` for a
packed model); CLI: ESPnet's ``asr_inference`` flags plus ``--scale``. The
1-best transcripts go to ``<output_dir>/1best_recog/text``. ``--scale auto``
with ``--budget_tokens_per_sec`` and/or ``--budget_rtf`` picks the most
accurate scale within the budget from the model's measured scale table;
``--scale adaptive`` (``adaptive@<tokens/s>`` for a budget) chooses a scale per
utterance with the model's fitted policy (``espnet_mtsk.decoding.policy``).
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from typeguard import typechecked

from espnet_mtsk.cli import add_pretrained_arguments
from espnet_mtsk.decoding.avsr2text import AVSR2Text, Decoded
from espnet_mtsk.decoding.policy import DECODING_FILE
from espnet_mtsk.decoding.scale_request import is_adaptive
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS
from espnet_mtsk.tasks.avsr import AVSRTask

__all__ = ["AVSR2Text", "Decoded", "inference", "get_parser", "main"]


@typechecked
def inference(
    output_dir: str,
    batch_size: int,
    ngpu: int,
    seed: int,
    num_workers: int,
    log_level: str,
    data_path_and_name_and_type: Sequence[Any],
    key_file: Optional[str],
    asr_train_config: Optional[str],
    asr_model_file: Optional[str],
    model_tag: Optional[str],
    scale: Optional[str],
    scales: Optional[Sequence[str]],
    beam_size: int,
    max_new_tokens: int,
    amp: bool,
    budget_tokens_per_sec: Optional[float],
    budget_rtf: Optional[float],
    scale_table: Optional[str],
    policy_file: Optional[str],
    pretrained_dir: Sequence[Tuple[str, str]],
    accept_pretrained_changes: bool,
    allow_variable_data_keys: bool,
):
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    device = "cuda" if ngpu >= 1 else "cpu"
    set_all_random_seed(seed)
    avsr = AVSR2Text.from_pretrained(
        model_tag=model_tag,
        asr_train_config=asr_train_config,
        asr_model_file=asr_model_file,
        scale=scale,
        device=device,
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
        amp=amp,
        budget_tokens_per_sec=budget_tokens_per_sec,
        budget_rtf=budget_rtf,
        scale_table=scale_table,
        policy_file=policy_file,
        pretrained_dirs=dict(pretrained_dir),
        accept_pretrained_changes=accept_pretrained_changes,
    )
    loader = AVSRTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype="float32",
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=AVSRTask.build_preprocess_fn(avsr.train_args, False),
        collate_fn=AVSRTask.build_collate_fn(avsr.train_args, False),
        allow_variable_data_keys=allow_variable_data_keys,
        inference=True,
    )
    # Per utterance and scale: the transcript, the LLM's audio-visual tokens,
    # the speech duration and its share of the batch's wall time at that
    # scale, from which scoring derives tokens per second and the real-time
    # factor. With --scales each scale writes to <output_dir>/<scale>/.
    per_scale = bool(scales)
    scales = [avsr.resolve_scale(s) for s in scales] if per_scale else [avsr.scale]
    logging.info(f"Decoding scales {scales} of {avsr.model.scale_ids}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / DECODING_FILE).write_text(json.dumps(avsr.decoding_settings()) + "\n")
    with DatadirWriter(output_dir) as writer:
        for keys, batch in loader:
            batch.pop("text", None)
            batch.pop("text_lengths", None)
            seconds = _durations(batch)
            for scale_id, decoded in avsr.decode_scales(batch, scales).items():
                out = (writer[scale_id] if per_scale else writer)["1best_recog"]
                share = 1 / len(keys)
                for i, (key, sec) in enumerate(zip(keys, seconds)):
                    out["text"][key] = decoded.texts[i]
                    out["num_tokens"][key] = str(decoded.num_tokens[i])
                    out["score"][key] = f"{decoded.scores[i]:.4f}"
                    out["speech_seconds"][key] = f"{sec:.3f}"
                    out["decode_seconds"][key] = f"{decoded.seconds * share:.4f}"
                    if is_adaptive(scale_id):
                        out["scale"][key] = ">".join(decoded.passes[i])
                        out["estimator_seconds"][key] = f"{decoded.estimator_seconds * share:.4f}"


def _durations(batch: Dict[str, torch.Tensor]) -> List[float]:
    if "speech_lengths" in batch:
        return (batch["speech_lengths"].float() / SAMPLE_RATE).tolist()
    return (batch["video_lengths"].float() / VIDEO_FPS).tolist()


def get_parser():
    parser = config_argparse.ArgumentParser(
        description="Llama-MTSK decoding at one scale",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log_level",
        type=lambda x: x.upper(),
        default="INFO",
        choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"),
    )
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument(
        "--amp", type=str2bool, default=False, help="bf16 autocast while decoding"
    )
    group = parser.add_argument_group("Input data related")
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, required=True, action="append"
    )
    group.add_argument("--key_file", type=str_or_none)
    group.add_argument("--allow_variable_data_keys", type=str2bool, default=False)
    group = parser.add_argument_group("The model configuration related")
    group.add_argument("--asr_train_config", type=str)
    group.add_argument("--asr_model_file", type=str)
    group.add_argument("--model_tag", type=str, help="A packed model: tag, URL or zip")
    add_pretrained_arguments(group)
    group = parser.add_argument_group("Decoding related")
    group.add_argument(
        "--scale", type=str_or_none, default=None,
        help="Scale id such as a4, v2 or a4_v2 (default: the model's first scale); "
        "'auto': the most accurate scale within --budget_tokens_per_sec / --budget_rtf; "
        "'adaptive': a scale per utterance, chosen by the model's fitted policy "
        "within --budget_tokens_per_sec (or 'adaptive@<tokens/s>')",
    )
    group.add_argument(
        "--budget_tokens_per_sec", type=float, default=None,
        help="--scale auto / adaptive: most LLM audio-visual tokens per second of speech",
    )
    group.add_argument(
        "--budget_rtf", type=float, default=None,
        help="--scale auto: highest real-time factor measured on the dev set",
    )
    group.add_argument(
        "--scale_table", type=str_or_none, default=None,
        help="--scale auto: the per-scale dev table of stage 13 "
        "(default: scale_table.json beside --asr_model_file)",
    )
    group.add_argument(
        "--policy_file", type=str_or_none, default=None,
        help="--scale adaptive: the fitted policy (default: policy.json beside --asr_model_file)",
    )
    group.add_argument(
        "--scales", type=str, nargs="+", default=None,
        help="Several scale ids (and adaptive@<tokens/s> policies) decoded together "
        "(encoders run once per batch); each writes <output_dir>/<scale>/1best_recog",
    )
    group.add_argument("--beam_size", type=int, default=15)
    group.add_argument("--max_new_tokens", type=int, default=32)
    return parser


def main(cmd=None):
    print(" ".join(sys.argv), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    inference(**kwargs)


if __name__ == "__main__":
    main()
