#!/usr/bin/env bash
# The run.sh of recipes with pretrained Whisper, AV-HuBERT and Llama (the
# paper's setting: egs2/lrs3, egs2/lrs2): checks the paths db.sh gives before
# the stages that need them and passes them to avsr.sh. A recipe's run.sh sets
# recipe_asr_args (its own training options) and runs this script.
#   ./run.sh --stage 1 --stop_stage 4                  # data (CPU)
#   ./run.sh --stage 5 --stop_stage 13 --ngpu 8 --asr_args "--multiprocessing_distributed true"
#   ./run.sh --train_config conf/tuning/train_asr_mtsk_stack_ss.yaml ...
# Options are avsr.sh's (see egs2/lrs3/avsr1/README.md); --asr_args adds to
# the pretrained model options this script sets rather than replacing them.
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test"
train_config=conf/tuning/train_avsr_mtsk_avgpool_ms.yaml
inference_config=conf/decode.yaml
stage=1
stop_stage=10000
extra_asr_args=""

. ./db.sh

args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --asr_args) extra_asr_args+=" $2"; shift 2 ;;
        --asr_args=*) extra_asr_args+=" ${1#*=}"; shift ;;
        --train_config) train_config=$2; shift 2 ;;
        --train_config=*) train_config=${1#*=}; shift ;;
        --stage) stage=$2; shift 2 ;;
        --stage=*) stage=${1#*=}; shift ;;
        --stop_stage) stop_stage=$2; shift 2 ;;
        --stop_stage=*) stop_stage=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

need() {  # need VAR WHAT: stop with a message unless $VAR names an existing path
    if [ -z "${!1:-}" ]; then
        echo "$0: $1 is not set: it must name $2. Set it in db.sh (or export it)." >&2
        exit 1
    fi
    if [ ! -e "${!1}" ]; then
        echo "$0: $1=${!1} does not exist (it must name $2)" >&2
        exit 1
    fi
}
runs() { [ "${stage}" -le "$2" ] && [ "${stop_stage}" -ge "$1" ]; }  # runs FIRST LAST

asr_args=""
if runs 5 11; then
    need LLAMA "a Hugging Face folder of Llama 3.2-1B (config.json, tokenizer, weights)"
fi
if runs 10 11; then
    . ./path.sh
    encoders=" $(python3 -m local.train_config "${train_config}") "  # those it names, "none" is none
    if [[ ${encoders} == *" audio "* ]]; then
        need WHISPER "a Hugging Face folder of openai/whisper-medium.en"
        asr_args+=" --audio_encoder_conf model_dir=${WHISPER}"
    fi
    if [[ ${encoders} == *" video "* ]]; then
        need AVHUBERT "the AV-HuBERT Large checkpoint (fairseq .pt, e.g. large_vox_iter5.pt)"
        asr_args+=" --video_encoder_conf checkpoint=${AVHUBERT}"
    fi
fi
noise_opts=()
if [ -n "${BABBLE}" ]; then
    # Babble in training (on the fly) and noisy test copies (local/data.sh).
    noise_opts=(--noise_scp data/noise/wav.scp)
    for snr in -5 0 5 10 15 20; do test_sets+=" test_snr${snr}"; done
fi

./avsr.sh \
    --stage "${stage}" \
    --stop_stage "${stop_stage}" \
    --nj 8 \
    --inference_nj 4 \
    --ngpu 1 \
    --gpu_inference true \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --inference_config "${inference_config}" \
    --llm_dir "${LLAMA}" \
    --max_wav_duration 16 \
    --local_data_opts "--nj 8" \
    --asr_args "${recipe_asr_args:-} ${asr_args} ${extra_asr_args}" \
    "${noise_opts[@]}" \
    "${args[@]}"
