#!/usr/bin/env python3
"""LLM cost of every scale of a training config, without building it.

    python -m espnet_mtsk.bin.cost_report --config conf/train.yaml \\
        [--llm_shape llama-3.2-1b] [--seconds 5]

Prints, per scale: audio-visual tokens per second of speech, the prompt
length for ``--seconds`` of speech, and the LLM's prefill GFLOPs for it (see
``espnet_mtsk.reporting.cost``). The LLM's shape comes from the ``config.json`` of the
config's LLM folder, or from ``--llm_shape`` (a known model or a config.json)
when the folder is not on this machine; the prompt lengths from its
tokenizer when present, else from a word count.
"""

import argparse
import json
from pathlib import Path

import yaml

from espnet_mtsk.llm.causal_lm import PROMPTS
from espnet_mtsk.reporting.cost import LLM_SHAPES, encoder_frame_rates, scale_costs
from espnet_mtsk.scales import matryoshka_scales


def _llm_folder(config: dict) -> Path:
    # The paper's configs leave model_dir null: run.sh fills it from db.sh.
    folder = Path((config.get("llm_conf") or {}).get("model_dir") or "")
    return folder.parent if folder.is_file() else folder


def _llm_shape(config: dict, name: str):
    if name in LLM_SHAPES:
        return LLM_SHAPES[name], name
    if name:
        return json.loads(Path(name).read_text()), name
    folder = _llm_folder(config)
    if not (folder / "config.json").is_file():
        raise SystemExit(
            f"the config's LLM folder '{folder}' has no config.json here: pass "
            f"--llm_shape ({', '.join(LLM_SHAPES)}) or a config.json"
        )
    return json.loads((folder / "config.json").read_text()), str(folder)


def _prompt_tokens(config: dict):
    folder = _llm_folder(config)
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        return {k: len(tokenizer(v, add_special_tokens=False).input_ids) for k, v in PROMPTS.items()}, "tokenizer"
    except (OSError, ValueError):
        return {k: len(v.split()) + 1 for k, v in PROMPTS.items()}, "word count + 1 (no tokenizer here)"


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--llm_shape", default="", help=f"{', '.join(LLM_SHAPES)} or a config.json")
    parser.add_argument("--seconds", type=float, default=5.0, help="speech duration of the prompt")
    args = parser.parse_args(cmd)

    config = yaml.safe_load(args.config.read_text())
    model_conf = config.get("model_conf") or {}
    scales = matryoshka_scales(
        model_conf.get("mode", "avsr"), model_conf.get("audio_rates", (4, 16)), model_conf.get("video_rates", (2, 5))
    )
    shape, shape_from = _llm_shape(config, args.llm_shape)
    prompts, prompts_from = _prompt_tokens(config)
    rates = encoder_frame_rates(config)
    rows = scale_costs(scales, rates, shape, args.seconds, prompts)
    print(f"{args.config}: encoder frames/s {rates}; LLM {shape_from}; "
          f"prompt lengths from {prompts_from}; {args.seconds} s of speech\n")
    print("| scale | tokens/s | prompt tokens | prefill GFLOPs |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r.scale} | {r.tokens_per_sec:.2f} | {r.sequence} | {r.prefill_gflops:.1f} |")


if __name__ == "__main__":
    main()
