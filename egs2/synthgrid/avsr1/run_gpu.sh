#!/usr/bin/env bash
# The real-LLM config (conf/train_avsr_mtsk_smollm2.yaml) on one GPU: ESPnet's
# CUDA AMP path (bf16 autocast where the GPU has it), every scale every step,
# trained to convergence, then every scale decoded on test_clean and
# test_snr0 on the GPU. Prints the per-scale WER, the time per step, the peak
# GPU memory and the learning curve (local.learning_curve).
#   ./run_gpu.sh [--max_epoch 10] [--batch_size 16] [--test_sets "..."] [--inference_args "..."]
# Stages 1-10 of `./run.sh --llm smollm2` must have run where this runs (or
# their dump/ and exp/ be there); it trains into exp/asr_gpu_smollm2.
# --ngpu 0 runs the same stages on the CPU (a check of this script).
set -euo pipefail

max_epoch=10
batch_size=16
ngpu=1
tag=gpu_smollm2
test_sets="test_clean test_snr0"
inference_args=""   # e.g. "--beam_size 4" (conf/decode.yaml's otherwise)
. ./path.sh
. utils/parse_options.sh

config=conf/train_avsr_mtsk_smollm2.yaml
steps_per_epoch=$(( ($(wc -l < dump/raw/train/text) + batch_size - 1) / batch_size ))
cycle=$(( steps_per_epoch * max_epoch ))
warmup=$(( cycle / 15 > 0 ? cycle / 15 : 1 ))   # the config's share (30 of 450 steps)
scales=$(python3 -m espnet_mtsk.scales "${config}" | wc -w)
amp=false
[ "${ngpu}" -gt 0 ] && amp=true
gpu_inference=false
[ "${ngpu}" -gt 0 ] && gpu_inference=true
start=$(date +%s)
./run.sh --llm smollm2 --stage 11 --stop_stage 13 --ngpu "${ngpu}" --gpu_inference "${gpu_inference}" \
    --asr_tag "${tag}" --asr_stats_dir exp/asr_stats_train_avsr_mtsk_smollm2 --inference_args "${inference_args}" \
    --test_sets "${test_sets}" \
    --asr_args "--use_amp ${amp} --batch_size ${batch_size} --max_epoch ${max_epoch} \
--model_conf scales_per_step=${scales} --scheduler_conf first_cycle_steps=${cycle} --scheduler_conf warmup_steps=${warmup}"
echo "stages 11-13: $(( $(date +%s) - start )) s"
python3 -m local.learning_curve "exp/asr_${tag}" --names "${tag}"
sed -n '/^## WER/,/^## CER/p' "exp/asr_${tag}/RESULTS.md" | grep '^|'
