#!/usr/bin/env bash
# Llama-MTSK on LRS3 (433 h): Whisper medium.en + AV-HuBERT Large + Llama
# 3.2-1B, frozen; projectors and LoRA trained; every scale decoded and scored.
# Usage and options: README.md (the steps are run_pretrained.sh's).
set -euo pipefail
recipe_asr_args=""
# Stage 14 references Llama and Whisper (too large for the zip) by these hub
# ids and a fingerprint; another machine finds them in its hub cache or is
# told where to get them.
pack_origins="--origin llm_conf.model_dir=meta-llama/Llama-3.2-1B --origin audio_encoder_conf.model_dir=openai/whisper-medium.en"
. ./run_pretrained.sh --pack_opts "${pack_origins}" "$@"
