#!/usr/bin/env bash
# Llama-MTSK on LRS3 (433 h): Whisper medium.en + AV-HuBERT Large + Llama
# 3.2-1B, frozen; projectors and LoRA trained; every scale decoded and scored.
# Usage and options: README.md (the steps are run_pretrained.sh's).
set -euo pipefail
recipe_asr_args=""
. ./run_pretrained.sh "$@"
