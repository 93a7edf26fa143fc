#!/usr/bin/env bash
# Stage 1: generate SynthGRID (espeak-ng speech + rendered mouth video) and
# write Kaldi-style data dirs: data/{train,dev,test_clean,test_snr*},
# data/dev_noisy (dev's speakers, more utterances, at every condition),
# data/train_noisy (a few utterances of every training speaker at every
# condition), data/test_mixed (each test utterance at a drawn condition),
# data/noise (training babble), data/lm_text (text-only LLM corpus) and, with
# --pretrain_speakers, data/pretrain.
set -euo pipefail
seed=0
nj=2
train_speakers=40
dev_speakers=2
test_speakers=4
utts_per_speaker=30        # training utterances per speaker (many voices generalise better)
test_utts_per_speaker=25   # dev and test utterances per speaker
noisy_dev_utts=75          # per dev speaker, at every condition (dev_noisy)
noisy_train_utts=5         # per training speaker, at every condition (train_noisy)
pretrain_speakers=60       # talkers of data/pretrain (the 30 voices no other set has), stage 9's video encoder's
pretrain_utts_per_speaker=20
snrs="-5 0 5 10"           # babble SNRs (dB) of the noisy dev and test copies
video_size=32              # mouth ROI side in pixels (LRS3 crops are 88)
lm_sentences=20000         # text-only sentences for the stand-in LLM
help_message="Usage: $0 [--nj 2] [--seed 0] [--train_speakers 40] [--utts_per_speaker 30] ... (see the variables at the top)"

. ./path.sh
. ./db.sh
. utils/parse_options.sh

# shellcheck disable=SC2086
python3 -m local.synthgrid.prepare --db_dir "${SYNTHGRID}" --data_dir data \
    --seed "${seed}" --nj "${nj}" --train_speakers "${train_speakers}" \
    --dev_speakers "${dev_speakers}" --test_speakers "${test_speakers}" \
    --utts_per_speaker "${utts_per_speaker}" --test_utts_per_speaker "${test_utts_per_speaker}" \
    --noisy_dev_utts "${noisy_dev_utts}" --noisy_train_utts "${noisy_train_utts}" \
    --pretrain_speakers "${pretrain_speakers}" --pretrain_utts_per_speaker "${pretrain_utts_per_speaker}" \
    --snrs ${snrs} --video_size "${video_size}"
python3 -m local.synthgrid.lm_text --out data/lm_text --n "${lm_sentences}" --seed "${seed}"
