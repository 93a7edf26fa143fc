#!/usr/bin/env python3
"""Training cost of the Matryoshka objective against per-rate models.

On the SynthGRID mini config (AVSR, audio rates 3 and 6 x video rates 3 and
6: K = 4 scales, frozen encoders, MS-LoRA) and one batch, times a full
training step (forward, backward, AdamW) of:
  * the K single-scale models, one step each (the per-rate baseline);
  * the Matryoshka model, scales looped through the LLM one by one;
  * the Matryoshka model, all scales as one padded LLM batch (the default
    when adapters are shared).
Then whole short trainings (--train_steps, a new batch each step) of the
Matryoshka model against the K per-rate models together.
Last line: ``ratio: X`` = the faster Matryoshka step / the K separate steps.

    python bench/train_step.py [--batch_size 16] [--reps 5] [--train_steps 10]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import build_model, make_batch, median_seconds, stand_in_llm, table

AUDIO_RATES, VIDEO_RATES = (3, 6), (3, 6)


def stepper(model, batch_for):
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-3)
    model.train()

    def step(i=0):
        loss, _, _ = model(**batch_for(i))
        optim.zero_grad()
        loss.backward()
        optim.step()

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--train_steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = stand_in_llm(Path(tmp) / "llm")
        mtsk = build_model(llm_dir, mode="avsr", audio_rates=list(AUDIO_RATES), video_rates=list(VIDEO_RATES))
        singles = {
            s.id: build_model(llm_dir, mode="avsr", audio_rates=[s.rates[0][1]], video_rates=[s.rates[1][1]])
            for s in mtsk.scales
        }
    tokenizer = mtsk.llm.tokenizer
    batches = [make_batch(tokenizer, args.batch_size, args.seconds, seed) for seed in range(args.train_steps)]
    batch_for = lambda i: batches[i % len(batches)]  # noqa: E731
    k = len(mtsk.scales)

    mtsk_step = stepper(mtsk, batch_for)

    def looped():
        mtsk.one_pass = False
        mtsk_step()

    def padded():
        mtsk.one_pass = True
        mtsk_step()

    single_steps = {sid: stepper(m, batch_for) for sid, m in singles.items()}
    fns = {f"single {sid}": fn for sid, fn in single_steps.items()}
    fns.update({"matryoshka, loop over scales": looped, "matryoshka, one padded pass": padded})
    times = median_seconds(fns, args.reps)

    separate = sum(times[f"single {sid}"] for sid in singles)
    best_name = min(("matryoshka, loop over scales", "matryoshka, one padded pass"), key=times.get)
    rows = [(name, f"{t * 1000:.0f}") for name, t in times.items()]
    rows.append((f"K = {k} single-scale steps together", f"{separate * 1000:.0f}"))
    print(f"batch {args.batch_size} x {args.seconds} s, {torch.get_num_threads()} threads, "
          f"scales {mtsk.scale_ids}\n")
    print(table(rows, ["one training step", "ms (median)"]))
    print(f"\nloop / padded: {times['matryoshka, loop over scales'] / times['matryoshka, one padded pass']:.2f}")

    mtsk.one_pass = best_name.endswith("pass")
    start = time.perf_counter()
    for i in range(args.train_steps):
        mtsk_step(i)
    whole_mtsk = time.perf_counter() - start
    start = time.perf_counter()
    for step in single_steps.values():
        for i in range(args.train_steps):
            step(i)
    whole_singles = time.perf_counter() - start
    print(f"\nwhole training, {args.train_steps} steps: matryoshka {whole_mtsk:.1f} s, "
          f"{k} per-rate models {whole_singles:.1f} s, ratio {whole_mtsk / whole_singles:.2f}")
    print(f"faster matryoshka step: {best_name}")
    print(f"ratio: {times[best_name] / separate:.2f}")


if __name__ == "__main__":
    main()
