#!/usr/bin/env bash
# Llama-MTSK on LRS2 (224 h): Whisper medium.en + AV-HuBERT Large + Llama
# 3.2-1B, frozen; projectors and LoRA trained; every scale decoded and scored.
# Usage and options: ../../lrs3/avsr1/README.md (the steps are run_pretrained.sh's).
set -euo pipefail
# The conf/tuning schedules are sized for LRS3 (about 3,250 steps per epoch
# with 8 GPUs); LRS2 has about half: 10 epochs of ~1,680 steps.
recipe_asr_args="--scheduler_conf first_cycle_steps=16800 --scheduler_conf warmup_steps=1680"
# Stage 14 references Llama and Whisper (too large for the zip) by these hub
# ids and a fingerprint; another machine finds them in its hub cache or is
# told where to get them.
pack_origins="--origin llm_conf.model_dir=meta-llama/Llama-3.2-1B --origin audio_encoder_conf.model_dir=openai/whisper-medium.en"
. ./run_pretrained.sh --pack_opts "${pack_origins}" "$@"
