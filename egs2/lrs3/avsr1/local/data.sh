#!/usr/bin/env bash
# Stage 1: LRS3 -> data/{train,dev,test} (wav.scp, video.scp, text, utt2spk,
# spk2utt); with a babble file in db.sh also data/noise/wav.scp (training
# noise) and data/test_snr<N> (the test set with babble at N dB).
# Reads the raw release or the auto_avsr output (see local/lrs/prepare.py):
# 16 kHz mono wavs extracted from the mp4s, pretrain clips cut into pieces of
# at most 16 s with their word timings, mouth crops by
# espnet_mtsk.bin.crop_mouth (raw release), transcripts lower-cased. Utterances
# that cannot be used (no face found, unreadable audio) are logged and listed
# in data/<set>/dropped. Re-running resumes: finished files are kept.
set -euo pipefail
nj=8                 # parallel jobs (audio extraction, mouth cropping)
layout=auto          # auto | raw | auto_avsr
valid_list=local/lrs3-valid.id  # AV-HuBERT's 1,200 validation ids (ESPnet's LRS3 dev)
dev_size=1200        # without a valid list: the last trainval speakers, this many utterances
max_duration=16      # pretrain clips longer than this (s) are cut
crop_size=88         # mouth crop side (pixels)
no_video=false       # true: audio only (no mouth crops)
noisy_snrs="-5 0 5 10 15 20"  # with BABBLE: data/test_snr<N>, the test set with babble at N dB
help_message="Usage: $0 [--nj 8] [--layout auto|raw|auto_avsr] [--valid_list FILE] [--no_video true] ..."

. ./path.sh
. ./db.sh
. utils/parse_options.sh

if [ -z "${LRS3}" ]; then
    echo "$0: LRS3 is not set: set it in db.sh (the LRS3 release or the auto_avsr output)" >&2
    exit 1
fi

valid_url=https://raw.githubusercontent.com/facebookresearch/av_hubert/main/avhubert/preparation/data/lrs3-valid.id
if [ -n "${valid_list}" ] && [ ! -s "${valid_list}" ]; then
    echo "$0: fetching the validation list ${valid_url}"
    mkdir -p "$(dirname "${valid_list}")"
    if wget -q -O "${valid_list}.tmp" "${valid_url}" 2>/dev/null && [ -s "${valid_list}.tmp" ]; then
        mv "${valid_list}.tmp" "${valid_list}"
    else
        rm -f "${valid_list}.tmp"
        echo "$0: WARNING: could not fetch ${valid_url}; dev = the last trainval speakers" \
            "(${dev_size} utterances). Put the file at ${valid_list} to match ESPnet's split." >&2
        valid_list=""
    fi
fi

opts=""
"${no_video}" && opts+=" --no_video"
[ -n "${BABBLE}" ] && opts+=" --noise_wav ${BABBLE} --noisy_snrs ${noisy_snrs}"
# shellcheck disable=SC2086
python3 -m local.lrs.prepare --corpus lrs3 --db_dir "${LRS3}" --data_dir data \
    --layout "${layout}" --nj "${nj}" --max_duration "${max_duration}" \
    --crop_size "${crop_size}" ${valid_list:+--valid_list "${valid_list}"} \
    --dev_size "${dev_size}" ${opts}

if [ -n "${BABBLE}" ]; then
    mkdir -p data/noise
    echo "babble $(readlink -f "${BABBLE}")" > data/noise/wav.scp
fi
