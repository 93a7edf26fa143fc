#!/usr/bin/env bash
# SynthGRID: the whole pipeline (corpus generation, stand-in LLM and encoder
# pre-training, Matryoshka training, decoding at every scale on clean and
# babble-noise test sets, scoring) on a CPU in minutes:
#   ./run.sh --stage 1 --stop_stage 13
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test_clean test_snr-5 test_snr0 test_snr5 test_snr10"
train_config=conf/train_avsr_mtsk.yaml
inference_config=conf/decode.yaml

./avsr.sh \
    --nj 2 \
    --inference_nj 2 \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --inference_config "${inference_config}" \
    --noise_scp data/noise/wav.scp \
    --pretrained whisper-tiny.en \
    --lm_train_text data/lm_text \
    --llm_build_opts "--hidden_size 128 --num_layers 2 --num_heads 4" \
    --llm_pretrain_opts "--steps 500 --batch_size 64 --repeat_prob 0.5" \
    --encoder_pretrain true \
    --encoder_pretrain_opts "--epochs 20 --batch_size 8 --lr 2e-3" \
    --encoder_dump true \
    --encoder_dump_opts "--noisy_copies 2" \
    "$@"
