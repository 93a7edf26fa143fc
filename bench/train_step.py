#!/usr/bin/env python3
"""Training cost of the Matryoshka objective against per-rate models.

On the SynthGRID mini config (AVSR, MS-LoRA, frozen encoders; by default
audio rates 3 and 6 x video rates 3 and 6: K = 4 scales; the paper's set is
``--audio_rates 4 16 --video_rates 2 5 --audio_frame_rate 50``) and one
batch, times in turns, every repetition:
  * E, the encoders alone (frontend included);
  * L_k, one scale's projector + LLM step (forward, backward, AdamW) on the
    encoders' output, for each of the K per-rate models;
  * the K per-rate models' full training steps (the baseline);
  * the Matryoshka model's step, scales looped through the LLM one by one,
    and all scales as one padded LLM batch (the default when adapters are
    shared);
  * one per-rate model's AdamW update alone.
With frozen encoders run once for all K scales, a Matryoshka step that is
the encoders plus each scale's L_k costs E + sum L_k against K E + sum L_k
for the K per-rate steps: that quotient is the floor, (E + K L) / (K (E + L))
with L the mean L_k. The Matryoshka step may go slightly below: it makes one
backward call and one AdamW update (timed alone too) for all its scales.
Then whole short trainings (--train_steps, a new batch each step), the
Matryoshka step and the K per-rate steps taking turns.

Times are medians over the repetitions ± half their 10-90 % range; floor and
ratio are computed per repetition from the times measured in it. Last lines:
``floor: X`` and ``ratio: Y`` = the faster Matryoshka step / the K per-rate
steps. By default one thread works and its CPU time is measured, which other
jobs on a shared machine change far less than the elapsed time;
``--threads N --clock wall`` times N threads by the clock.

    python bench/train_step.py [--batch_size 16] [--reps 10] [--train_steps 10] \\
        [--audio_rates 4 16 --video_rates 2 5 --audio_frame_rate 50] [--threads 2 --clock wall]

With ``--llm_dir`` (an HF folder of a real LLM, e.g. the SynthGRID recipe's
exp/pretrained/smollm2-135m) it times instead the Matryoshka step of the
recipe's real-LLM config (``--config``, all its scales per step, MS-LoRA; the
projectors and the LLM on encoder outputs shaped as the recipe's dumped
Whisper tiny.en and video encoder give them, ``--seconds`` long) under each
speed lever in turn, each added to the ones before, the levers' models
taking turns within every repetition; it prints each one's time per step
and per scale and utterance, and its ratio to the first; then the config as
it is (its ``scales_per_step`` and buckets). Last line:
``per scale and utterance: X`` (seconds) with every lever on, all scales.

    python bench/train_step.py --llm_dir egs2/synthgrid/avsr1/exp/pretrained/smollm2-135m \\
        --batch_size 8 --seconds 2.3 --reps 3 --threads 2

``--dtypes float32 bfloat16`` times instead the config as it is (its
scales per step) with the LLM's weights stored in each dtype: on a CPU
without native bf16 the second is emulated.
"""

import argparse
import tempfile
from pathlib import Path

import torch
import yaml

from common import (
    ROOT, Progress, Summary, add_machine_args, add_scale_args, build_model, build_scaled_model, machine,
    make_batch, ratios, set_machine, stand_in_llm, table, time_samples, timed,
)

REAL_LLM_CONFIG = ROOT / "egs2/synthgrid/avsr1/conf/train_avsr_mtsk_smollm2.yaml"
# Each lever's llm_conf / lora_conf, added to those above it; the first row
# is the starting point (float32, SDPA, LoRA dropout 0.05, one pass).
LEVERS = [
    ("float32, SDPA attention, LoRA dropout 0.05, one padded pass",
     dict(dtype="float32", autocast="none", attn_implementation="sdpa", length_buckets=1), dict(lora_dropout=0.05)),
    ("+ bf16 autocast", dict(autocast="bfloat16"), {}),
    ("+ frozen weights stored in bf16", dict(dtype="bfloat16"), {}),
    ("+ eager attention", dict(attn_implementation="eager"), {}),
    ("+ no LoRA dropout", {}, dict(lora_dropout=0.0)),
    ("+ 4 length buckets", dict(length_buckets=4), {}),
]
# Last row: the config itself, whose step trains K of its scales
# (model_conf.scales_per_step) with its own length buckets.
AS_CONFIGURED = "the config as it is (its scales per step and buckets)"
# The recipe's dumped encoder outputs: Whisper tiny.en (384-d, 50 Hz) and
# the video stand-in (96-d, 25 fps).
ENCODED = {"audio": (384, 50), "video": (96, 25)}

LOOP, PADDED = "matryoshka, loop over scales", "matryoshka, one padded pass"


def stepper(model, batch_for):
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-3)
    model.train()

    def step(i=0, **extra):
        loss, _, _ = model(**batch_for(i), **extra)
        optim.zero_grad()
        loss.backward()
        optim.step()

    step.optimizer = optim
    return step


def lever_configs(configured: dict) -> dict:
    """{row name: config}: each of LEVERS added to those before it, all
    scales per step; then the config as it is."""
    llm_conf, lora_conf = dict(configured.get("llm_conf", {})), dict(configured["lora_conf"])
    all_scales = dict(configured, model_conf=dict(configured["model_conf"], scales_per_step=None))
    out = {}
    for name, llm_over, lora_over in LEVERS:
        llm_conf.update(llm_over)
        lora_conf.update(lora_over)
        out[name] = dict(all_scales, llm_conf=dict(llm_conf), lora_conf=dict(lora_conf))
    out[AS_CONFIGURED] = configured
    return out


def dtype_configs(configured: dict, dtypes) -> dict:
    """{row name: config}: the config as it is with its LLM's weights
    stored in each of ``dtypes`` (``llm_conf.dtype``)."""
    return {f"the config, weights in {d}": dict(configured, llm_conf=dict(configured["llm_conf"], dtype=d))
            for d in dtypes}


def real_llm_steps(args, progress: Progress, configs: dict) -> None:
    """The real-LLM step of each of ``configs`` (see the module's doc)."""
    steps, models = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        # The audio encoder is not timed: any Whisper of tiny.en's width serves.
        from local.standins import build_whisper

        whisper = build_whisper(tmp, d_model=ENCODED["audio"][0], num_layers=1, num_heads=6)

        def build(conf):
            conf = dict(conf, audio_encoder_conf={**conf["audio_encoder_conf"], "model_dir": str(whisper)})
            conf["llm_conf"] = dict(conf["llm_conf"], model_dir=str(args.llm_dir))
            config = Path(tmp) / "config.yaml"
            config.write_text(yaml.safe_dump(conf))
            return build_model(args.llm_dir, config)

        models = {name: build(conf) for name, conf in configs.items()}
    progress(f"built {len(models)} models of {args.config.name}")
    first = next(iter(models.values()))
    batch = make_batch(first.llm.tokenizer, args.batch_size, args.seconds)
    gen = torch.Generator().manual_seed(0)
    encoded = {}
    for modality, (dim, rate) in ENCODED.items():
        frames = int(args.seconds * rate)
        encoded[modality] = (torch.randn(args.batch_size, frames, dim, generator=gen),
                             torch.full((args.batch_size,), frames))
    for name, model in models.items():
        steps[name] = stepper(model, lambda _i: {"text": batch["text"], "text_lengths": batch["text_lengths"]})
    times = time_samples({name: (lambda step=step: step(encoded=encoded)) for name, step in steps.items()},
                         args.reps, progress=progress)
    base = times[next(iter(models))]
    per_row = {name: Summary(t).format(1 / (models[name].scales_per_step * args.batch_size), 3)
               for name, t in times.items()}
    rows = [(name, Summary(t).format(), per_row[name], Summary(ratios(t, base)).format(digits=2))
            for name, t in times.items()]
    print(f"{machine(torch.device('cpu'), 'rows below')}; {args.llm_dir.name}, {args.config.name}, "
          f"batch {args.batch_size} x {args.seconds} s, scales {first.scale_ids}, {args.reps} repetitions\n")
    print(table(rows, ["config", "s per step", "s per scale and utterance", "/ first row"]))
    print(f"\nper scale and utterance: {per_row[list(models)[-1]]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scale_args(parser)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--train_steps", type=int, default=10)
    parser.add_argument("--llm_dir", type=Path, help="a real LLM's HF folder: time the speed levers instead")
    parser.add_argument("--config", type=Path, default=REAL_LLM_CONFIG, help="the real-LLM config (with --llm_dir)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"],
                        help="with --llm_dir: time the config as it is with its LLM's weights in each of these "
                             "(llm_conf.dtype) instead of the levers")
    add_machine_args(parser)
    args = parser.parse_args()
    set_machine(parser, args, torch.device("cpu"))
    progress = Progress()
    if args.llm_dir is not None:
        configured = yaml.safe_load(args.config.read_text())
        configs = dtype_configs(configured, args.dtypes) if args.dtypes else lever_configs(configured)
        real_llm_steps(args, progress, configs)
        return

    with tempfile.TemporaryDirectory() as tmp:
        llm_dir = stand_in_llm(Path(tmp) / "llm")
        mtsk = build_scaled_model(llm_dir, args, "avsr")
        singles = {
            s.id: build_scaled_model(llm_dir, args, "avsr", audio_rates=[s.rates[0][1]], video_rates=[s.rates[1][1]])
            for s in mtsk.scales
        }
    progress(f"built the Matryoshka model and {len(singles)} per-rate models")
    tokenizer = mtsk.llm.tokenizer
    batches = [make_batch(tokenizer, args.batch_size, args.seconds, seed) for seed in range(args.train_steps)]
    batch_for = lambda i: batches[i % len(batches)]  # noqa: E731
    inputs = {k: v for k, v in batches[0].items() if not k.startswith("text")}
    k = len(mtsk.scales)

    mtsk_step = stepper(mtsk, batch_for)

    def looped():
        mtsk.one_pass = False
        mtsk_step()

    def padded():
        mtsk.one_pass = True
        mtsk_step()

    def encoders():
        mtsk.encode(**inputs)

    single_steps = {sid: stepper(m, batch_for) for sid, m in singles.items()}
    # The per-rate models' encoders are the Matryoshka model's (same config
    # and seed), so its output serves their L_k steps.
    encoded = mtsk.encode(**inputs)
    fns = {"encoders (E)": encoders}
    fns.update({f"L {sid}": (lambda step=step: step(encoded=encoded)) for sid, step in single_steps.items()})
    fns.update({f"single {sid}": step for sid, step in single_steps.items()})
    fns.update({LOOP: looped, PADDED: padded})
    # The part of each L_k that the Matryoshka step pays once for all K
    # scales (its gradients are those the step before left).
    first = next(iter(single_steps))
    fns[f"AdamW update alone, {first}"] = single_steps[first].optimizer.step
    times = time_samples(fns, args.reps, progress=progress)

    per_rep = lambda prefix: [sum(ts) for ts in zip(*(times[f"{prefix} {sid}"] for sid in singles))]  # noqa: E731
    separate, llm_sum = per_rep("single"), per_rep("L")
    best = min((LOOP, PADDED), key=lambda name: Summary(times[name]).median)
    encoder_times = times["encoders (E)"]
    at_floor = [e + ls for e, ls in zip(encoder_times, llm_sum)]
    separate_parts = [k * e + ls for e, ls in zip(encoder_times, llm_sum)]
    floor = Summary(ratios(at_floor, separate_parts))
    ratio = Summary(ratios(times[best], separate))
    decomposition = Summary(ratios(separate, separate_parts))

    rows = [(name, Summary(t).format(1000)) for name, t in times.items()]
    rows.append((f"K = {k} single-scale steps together", Summary(separate).format(1000)))
    print(f"{machine(torch.device('cpu'), next(mtsk.llm.model.parameters()).dtype)}; "
          f"batch {args.batch_size} x {args.seconds} s, audio {args.audio_frame_rate} frames/s, "
          f"scales {mtsk.scale_ids}, {args.reps} repetitions\n")
    print(table(rows, ["one training step (L: projector + LLM on the encoders' output)", "ms, median ± spread"]))
    print(f"\nloop / padded: {Summary(ratios(times[LOOP], times[PADDED])).format(digits=2)}")
    print(f"K single steps / (K E + sum L): {decomposition.format(digits=2)}")

    mtsk.one_pass = best == PADDED
    whole_mtsk, whole_singles = [], []
    for i in range(args.train_steps):
        whole_mtsk.append(timed(lambda: mtsk_step(i)))
        whole_singles.append(sum(timed(lambda step=step: step(i)) for step in single_steps.values()))
    progress(f"whole trainings of {args.train_steps} steps done")
    print(f"\nwhole training, {args.train_steps} steps, a new batch each, matryoshka / {k} per-rate models "
          f"per step: {Summary(ratios(whole_mtsk, whole_singles)).format(digits=2)}")
    print(f"faster matryoshka step: {best}")
    print(f"floor: {floor.format(digits=3)}")
    print(f"ratio: {ratio.format(digits=3)}")


if __name__ == "__main__":
    main()
