#!/usr/bin/env bash
# Stage 1: generate SynthGRID (espeak-ng speech + rendered mouth video) and
# write Kaldi-style data dirs: data/{train,dev,test_clean,test_snr*},
# data/noise (training babble) and data/lm_text (text-only LLM corpus).
set -euo pipefail
seed=0
nj=2
snrs="-5 0 5 10"
lm_sentences=20000      # text-only sentences for the stand-in LLM
prepare_opts=""         # sizes etc. of espnet_mtsk.data.synthgrid.prepare
help_message="Usage: $0 [--seed 0] [--nj 2] [--snrs '-5 0 5 10'] [--lm_sentences N] [--prepare_opts '...']"

. ./path.sh
. ./db.sh
. utils/parse_options.sh

# shellcheck disable=SC2086
python3 -m espnet_mtsk.data.synthgrid.prepare --db_dir "${SYNTHGRID}" --data_dir data \
    --seed "${seed}" --nj "${nj}" --snrs ${snrs} --lm_sentences "${lm_sentences}" ${prepare_opts}
