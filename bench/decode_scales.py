#!/usr/bin/env python3
"""Inference cost per scale: what the Matryoshka set buys at decoding time.

For every scale of a model (default: the SynthGRID mini config with mode
all, so ASR, VSR and AVSR scales; --llm_shape 1b swaps in a Llama-3.2-1B-
shaped random LLM), on one batch: the LLM's audio-visual tokens per second
of speech, the encoders' time, the prefill (one forward over the prompt),
the per-token decode time (beam search with a fixed number of new tokens,
minus the prefill), the real-time factor of the whole decode, and the peak
memory (CUDA: measured; CPU: the KV cache the beams hold, computed).
Last line: ``ratio: X`` = the coarsest AVSR scale's prefill / the finest's.

    python bench/decode_scales.py [--batch_size 4] [--beam_size 5] [--new_tokens 8] \
        [--mode avsr] [--audio_frame_rate 50]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import build_model, make_batch, median_seconds, stand_in_llm, table

# Llama 3.2 1B's shape (hidden, layers, heads); its 128k vocabulary is left
# out: the stand-in tokenizer's is small, and the embedding lookup is cheap.
LLM_SHAPES = {"mini": {}, "1b": dict(hidden_size=2048, num_layers=16, num_heads=32)}
# The conformer's subsampling for its output frame rate on 100 Hz features:
# 25 Hz is the recipe's, 50 Hz Whisper's (so audio tokens/s match the paper's).
AUDIO_INPUT_LAYERS = {25: "conv2d", 50: "conv2d2"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm_shape", choices=sorted(LLM_SHAPES), default="mini")
    parser.add_argument("--audio_rates", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--video_rates", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--mode", choices=["all", "avsr"], default="all",
                        help="avsr: only the audio-visual scales (the ratio's)")
    parser.add_argument("--audio_frame_rate", type=int, choices=sorted(AUDIO_INPUT_LAYERS), default=25,
                        help="audio encoder output frames/s (50: Whisper's)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--beam_size", type=int, default=5)
    parser.add_argument("--new_tokens", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = stand_in_llm(Path(tmp) / "llm", **LLM_SHAPES[args.llm_shape])
        model = build_model(
            llm_dir, audio_encoder_conf={"input_layer": AUDIO_INPUT_LAYERS[args.audio_frame_rate]},
            mode=args.mode, audio_rates=args.audio_rates, video_rates=args.video_rates,
        )
    model = model.to(device).eval()
    llm = model.llm
    batch = make_batch(llm.tokenizer, args.batch_size, args.seconds)
    batch = {k: v.to(device) for k, v in batch.items() if not k.startswith("text")}
    speech_seconds = args.seconds * args.batch_size
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    config = llm.model.config
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (
        config.hidden_size // config.num_attention_heads
    ) * (2 if args.bf16 else 4)

    rows, prefill = [], {}
    with torch.no_grad(), autocast:
        encode = {}
        for modality in model.encoders:
            fn = lambda m=modality: model.encode(**batch, modalities=[m])  # noqa: E731
            encode[modality] = median_seconds({modality: fn}, args.reps)[modality]
        encoded = model.encode(**batch)
        for scale in model.scales:
            model.lora.activate(llm.model, scale.id)
            segments = model.segments(encoded, scale, {})
            tokens = int(sum(lens for _, _, lens in segments).sum())
            inputs = llm.build_inputs(segments)

            def run_prefill():
                llm.model(**inputs, use_cache=True)
                sync(device)

            gen_inputs = {k: v for k, v in inputs.items() if k != "position_ids"}

            def run_generate():
                llm.model.generate(
                    **gen_inputs, num_beams=args.beam_size, do_sample=False,
                    min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens,
                    pad_token_id=llm.tokenizer.pad_token_id,
                )
                sync(device)

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t = median_seconds({"prefill": run_prefill, "generate": run_generate}, args.reps)
            if device.type == "cuda":
                memory = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} (peak)"
            else:
                width = inputs["inputs_embeds"].size(1) + args.new_tokens
                memory = f"{args.batch_size * args.beam_size * width * kv_per_token / 2**20:.2f} (KV)"
            per_token = (t["generate"] - t["prefill"]) / args.new_tokens
            encoders = sum(encode[m] for m in scale.modalities)
            prefill[scale.id] = t["prefill"]
            rows.append((
                scale.id,
                f"{tokens / speech_seconds:.1f}",
                f"{encoders * 1000:.1f}",
                f"{t['prefill'] * 1000:.1f}",
                f"{per_token * 1000:.1f}",
                f"{(encoders + t['generate']) / speech_seconds:.3f}",
                memory,
            ))
    print(f"{args.llm_shape} LLM ({config.num_hidden_layers} layers, hidden {config.hidden_size}), "
          f"audio {args.audio_frame_rate} frames/s, "
          f"{device}{' bf16' if args.bf16 else ''}, batch {args.batch_size} x {args.seconds} s, "
          f"beam {args.beam_size}, {args.new_tokens} new tokens, {torch.get_num_threads()} threads\n")
    print(table(rows, ["scale", "tokens/s", "encoders ms", "prefill ms", "ms/token", "RTF", "memory MB"]))
    avsr = [s for s in model.scales if len(s.rates) == 2]
    finest = max(avsr, key=lambda s: sum(1 / r for _, r in s.rates))
    coarsest = min(avsr, key=lambda s: sum(1 / r for _, r in s.rates))
    print(f"\nprefill {coarsest.id} / {finest.id}")
    print(f"ratio: {prefill[coarsest.id] / prefill[finest.id]:.2f}")


if __name__ == "__main__":
    main()
