#!/usr/bin/env python3
"""Inference cost per scale: what the Matryoshka set buys at decoding time.

For every scale of a model (default: the SynthGRID mini config with mode
all, so ASR, VSR and AVSR scales; --llm_shape 1b swaps in a Llama-3.2-1B-
shaped random LLM), on one batch: the LLM's audio-visual tokens per second
of speech, the encoders' time, the prefill (one forward over the prompts),
the time of one decoding step (one forward of one new token per row over the
KV cache), the real-time factor of encoders + prefill + --new_tokens steps,
and the memory (CUDA: measured peak; CPU: the KV cache, computed). Rows are
batch x beam, as beam search runs them; each step takes every row's most
likely token (the beams' bookkeeping, which is not the LLM's cost, is left
out).

Each repetition runs every encoder and decodes every scale once, in turns,
so drift hits all alike. Times are medians ± half their 10-90 % range over
the repetitions (the steps: over every step of every repetition); a time
with fewer than 3 samples, or a spread over 25 % of its median, is printed
as unreliable. Last line: ``ratio: X`` = the coarsest AVSR scale's prefill /
the finest's, per repetition. Progress goes to stderr. By default one thread
works and its CPU time is measured, which other jobs on a shared machine
change far less than the elapsed time; ``--threads N --clock wall`` times N
threads by the clock.

    python bench/decode_scales.py [--batch_size 4] [--beam_size 1] [--new_tokens 8] \\
        [--reps 3] [--mode avsr] [--audio_frame_rate 50] [--threads 2 --clock wall]
"""

import argparse
import tempfile
from pathlib import Path

import torch

from common import (
    Progress, Summary, add_machine_args, add_scale_args, build_scaled_model, machine, make_batch, now, ratios,
    set_machine, stand_in_llm, table, timed,
)

# Llama 3.2 1B's shape (hidden, layers, heads); its 128k vocabulary is left
# out: the stand-in tokenizer's is small, and the embedding lookup is cheap.
LLM_SHAPES = {"mini": {}, "1b": dict(hidden_size=2048, num_layers=16, num_heads=32)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def decoder(llm, inputs, new_tokens, device):
    """A function that prefills ``inputs`` and decodes ``new_tokens`` steps,
    returning the prefill's time and each step's."""

    def forward(**kwargs):
        start = now()
        out = llm.model(**kwargs, use_cache=True, logits_to_keep=1)
        sync(device)
        return out, now() - start

    def decode():
        out, prefill = forward(**inputs)
        mask, position = inputs["attention_mask"], inputs["position_ids"][:, -1:]
        steps = []
        for _ in range(new_tokens):
            mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], 1)
            position = position + 1
            out, seconds = forward(
                input_ids=out.logits[:, -1].argmax(-1, keepdim=True), attention_mask=mask,
                position_ids=position, cache=out.cache,
            )
            steps.append(seconds)
        return prefill, steps

    return decode


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm_shape", choices=sorted(LLM_SHAPES), default="mini")
    add_scale_args(parser)
    parser.add_argument("--mode", choices=["all", "avsr"], default="all",
                        help="avsr: only the audio-visual scales (the ratio's)")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--beam_size", type=int, default=1)
    parser.add_argument("--new_tokens", type=int, default=8, help="decoding steps timed after the prefill")
    parser.add_argument("--reps", type=int, default=3)
    add_machine_args(parser)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    set_machine(parser, args, device)
    progress = Progress()

    progress(f"building the {args.llm_shape} LLM and the model")
    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = stand_in_llm(Path(tmp) / "llm", **LLM_SHAPES[args.llm_shape])
        model = build_scaled_model(llm_dir, args, args.mode)
    model = model.to(device).eval()
    llm = model.llm
    batch = make_batch(llm.tokenizer, args.batch_size, args.seconds)
    batch = {k: v.to(device) for k, v in batch.items() if not k.startswith("text")}
    speech_seconds = args.seconds * args.batch_size
    rows = args.batch_size * args.beam_size
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    config = llm.model.config
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (
        config.hidden_size // config.num_attention_heads
    ) * (2 if args.bf16 else 4)

    encode_times = {m: [] for m in model.encoders}
    prefills = {s.id: [] for s in model.scales}
    steps = {s.id: [] for s in model.scales}
    decodes, tokens, widths, peaks = {}, {}, {}, {}
    with torch.no_grad(), autocast:
        encoded = model.encode(**batch)
        for scale in model.scales:
            model.lora.activate(llm.model, scale.id)
            parts = model.prompt_parts(encoded, scale, {})
            tokens[scale.id] = int(sum(lens for _, _, lens in parts).sum())
            inputs = {k: v.repeat_interleave(args.beam_size, 0) for k, v in llm.build_inputs(parts).items()}
            widths[scale.id] = inputs["inputs_embeds"].size(1)
            decodes[scale.id] = decoder(llm, inputs, args.new_tokens, device)
        progress(f"{len(model.scales)} scales, 1 warm-up + {args.reps} repetitions")

        def encode(modality):
            model.encode(**batch, modalities=[modality])
            sync(device)

        for rep in range(1 + args.reps):
            label = f"repetition {rep}/{args.reps}" if rep else "warm-up"
            rep_start = progress.elapsed()
            for modality in model.encoders:
                t = timed(lambda: encode(modality))
                if rep:
                    encode_times[modality].append(t)
            for scale in model.scales:
                model.lora.activate(llm.model, scale.id)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                prefill, step_times = decodes[scale.id]()
                if device.type == "cuda":
                    peaks[scale.id] = max(peaks.get(scale.id, 0), torch.cuda.max_memory_allocated())
                if rep:
                    prefills[scale.id].append(prefill)
                    steps[scale.id].append(step_times)
                step_ms = f", steps {Summary(step_times).median * 1000:.1f} ms" if step_times else ""
                progress(f"{label} {scale.id}: prefill {prefill * 1000:.1f} ms{step_ms}")
            if not rep:
                progress(f"about {(progress.elapsed() - rep_start) * args.reps:.0f} s to go")

    table_rows = []
    for scale in model.scales:
        encoders = [sum(ts) for ts in zip(*(encode_times[m] for m in scale.modalities))]
        decode = [e + p + sum(s) for e, p, s in zip(encoders, prefills[scale.id], steps[scale.id])]
        if device.type == "cuda":
            memory = f"{peaks[scale.id] / 2**20:.0f} (peak)"
        else:
            memory = f"{rows * (widths[scale.id] + args.new_tokens) * kv_per_token / 2**20:.2f} (KV)"
        step_samples = [t for rep_steps in steps[scale.id] for t in rep_steps]
        table_rows.append((
            scale.id,
            f"{tokens[scale.id] / speech_seconds:.1f}",
            Summary(encoders).format(1000),
            Summary(prefills[scale.id]).format(1000),
            Summary(step_samples).format(1000) if step_samples else "not measured (--new_tokens 0)",
            Summary([d / speech_seconds for d in decode]).format(digits=3),
            memory,
        ))
    dtype = "bf16 autocast" if args.bf16 else next(llm.model.parameters()).dtype
    print(f"{machine(device, dtype)}; {args.llm_shape} LLM ({config.num_hidden_layers} layers, "
          f"hidden {config.hidden_size}), audio {args.audio_frame_rate} frames/s, "
          f"batch {args.batch_size} x {args.seconds} s, beam {args.beam_size} ({rows} row{'s' * (rows > 1)}), "
          f"{args.new_tokens} steps, {args.reps} repetitions\n")
    print(table(table_rows, ["scale", "tokens/s", "encoders ms", "prefill ms", "ms/step", "RTF", "memory MB"]))
    avsr = [s for s in model.scales if len(s.rates) == 2]
    finest = max(avsr, key=lambda s: sum(1 / r for _, r in s.rates))
    coarsest = min(avsr, key=lambda s: sum(1 / r for _, r in s.rates))
    print(f"\nprefill {coarsest.id} / {finest.id}")
    print(f"ratio: {Summary(ratios(prefills[coarsest.id], prefills[finest.id])).format(digits=2)}")


if __name__ == "__main__":
    main()
