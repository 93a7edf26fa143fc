#!/usr/bin/env bash
# Llama-MTSK on LRS2 (224 h): Whisper medium.en + AV-HuBERT Large + Llama
# 3.2-1B, frozen; projectors and LoRA trained; every scale decoded and scored.
# Usage and options: ../../lrs3/avsr1/README.md (the steps are run_pretrained.sh's).
set -euo pipefail
# The conf/tuning schedules are sized for LRS3 (about 3,250 steps per epoch
# with 8 GPUs); LRS2 has about half: 10 epochs of ~1,680 steps.
recipe_asr_args="--scheduler_conf first_cycle_steps=16800 --scheduler_conf warmup_steps=1680"
. ./run_pretrained.sh "$@"
