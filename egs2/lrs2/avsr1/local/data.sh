#!/usr/bin/env bash
# Stage 1: LRS2 -> data/{train,dev,test} (wav.scp, video.scp, text, utt2spk,
# spk2utt); with a babble file in db.sh also data/noise/wav.scp (training
# noise) and data/test_snr<N> (the test set with babble at N dB).
# train = train.txt + pretrain.txt (pretrain clips cut into pieces of at most
# 16 s with their word timings), dev = val.txt, test = test.txt; or the
# auto_avsr label files lrs2_{train,val,test}_transcript_lengths_seg16s.csv.
# See local/lrs/prepare.py. Utterances that cannot be used (no face found,
# unreadable audio) are logged and listed in data/<set>/dropped. Re-running
# resumes: finished files are kept.
set -euo pipefail
nj=8                 # parallel jobs (audio extraction, mouth cropping)
layout=auto          # auto | raw | auto_avsr
max_duration=16      # pretrain clips longer than this (s) are cut
crop_size=88         # mouth crop side (pixels)
no_video=false       # true: audio only (no mouth crops)
noisy_snrs="-5 0 5 10 15 20"  # with BABBLE: data/test_snr<N>, the test set with babble at N dB
help_message="Usage: $0 [--nj 8] [--layout auto|raw|auto_avsr] [--no_video true] ..."

. ./path.sh
. ./db.sh
. utils/parse_options.sh

if [ -z "${LRS2}" ]; then
    echo "$0: LRS2 is not set: set it in db.sh (the LRS2 release or the auto_avsr output)" >&2
    exit 1
fi

opts=""
"${no_video}" && opts+=" --no_video"
[ -n "${BABBLE}" ] && opts+=" --noise_wav ${BABBLE} --noisy_snrs ${noisy_snrs}"
# shellcheck disable=SC2086
python3 -m local.lrs.prepare --corpus lrs2 --db_dir "${LRS2}" --data_dir data \
    --layout "${layout}" --nj "${nj}" --max_duration "${max_duration}" \
    --crop_size "${crop_size}" ${opts}

if [ -n "${BABBLE}" ]; then
    mkdir -p data/noise
    echo "babble $(readlink -f "${BABBLE}")" > data/noise/wav.scp
fi
