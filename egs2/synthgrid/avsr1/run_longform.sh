#!/usr/bin/env bash
# Long-form transcription on SynthGRID, after ./run.sh --stage 1 --stop_stage 13:
# the test utterances strung into face videos minutes long, with pauses,
# babble-only stretches and utterances spoken with no face in the picture
# (${long_set}, made once by local/synthgrid/longform.py), transcribed
# with VAD segmentation (espnet_mtsk.bin.transcribe) and, the same
# utterances, one clip each (--vad false), at each scale of --scales.
# local/longform_score.py scores both (WER of the whole and per segment, VAD
# boundaries, babble false alarms, the face-absent utterances) into
# ${asr_exp}/RESULTS_longform.md.
#   ./run_longform.sh [--scales "a4 a4_v3"] [--size 1280x720] [--longform_opts "--speakers_per_recording 1"]
#                     [--transcribe_opts "--beam_size 4"]
set -euo pipefail

scales="a4 a4_v3"
asr_exp=exp/asr_train_avsr_mtsk
inference_model=valid.acc.ave.pth
test_set=test_clean            # the utterances (data/<test_set>)
long_set=data/test_long        # the long-form set, made when missing (delete it to remake it)
noise_scp=                     # the babble of the babble-only stretches (default: the test talkers' babble)
seed=0
size=256x256                   # frame WIDTHxHEIGHT of the face videos
preset=veryfast                # libx264 preset
crop_size=32                   # mouth crop side: local/data.sh's --video_size, as the model was trained
longform_opts=""               # more options of local.synthgrid.longform
transcribe_opts="--beam_size 4"  # more options of espnet_mtsk.bin.transcribe (the beam of conf/decode.yaml)
help_message="Usage: $0 [--scales \"a4 a4_v3\"] [--size 256x256] [--longform_opts ...] [--transcribe_opts ...] (see the variables at the top)"

. ./path.sh
. ./db.sh
. utils/parse_options.sh

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run_longform.sh) $*"; }

if [ ! -e "${long_set}/clips.scp" ]; then
    log "Long-form set of data/${test_set} -> ${long_set}"
    if [ -z "${noise_scp}" ]; then
        # The babble local/data.sh made for the noisy test sets: other
        # talkers than the training babble's, which the model heard.
        mkdir -p "${long_set}"
        noise_scp=${long_set}/noise.scp
        for wav in "${SYNTHGRID}"/noise/test/*.wav; do echo "$(basename "${wav}" .wav) ${wav}"; done > "${noise_scp}"
    fi
    # shellcheck disable=SC2086
    python3 -m local.synthgrid.longform --data_dir "data/${test_set}" --noise_scp "${noise_scp}" \
        --out_dir "${long_set}" --seed "${seed}" --size "${size}" --preset "${preset}" ${longform_opts}
fi

out=${asr_exp}/decode_longform_$(basename "${inference_model}" .pth)
for scale in ${scales}; do
    # The recordings with VAD; their utterances as clips, each decoded whole.
    for what in long clips; do
        if [ "${what}" = long ]; then list=${long_set}/recordings.scp; vad=true; else list=${long_set}/clips.scp; vad=false; fi
        dir=${out}/${scale}/${what}
        log "Transcribing ${list} at ${scale} (--vad ${vad}) -> ${dir}"
        mkdir -p "${dir}"
        # shellcheck disable=SC2046,SC2086
        python3 -m espnet_mtsk.bin.transcribe $(cut -d' ' -f2 "${list}") \
            --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_model}" \
            --scale "${scale}" --crop_size "${crop_size}" --vad "${vad}" \
            --subtitles json --output_dir "${dir}" --progress false ${transcribe_opts} > "${dir}/transcribe.log"
    done
done

log "Scoring -> ${asr_exp}/RESULTS_longform.md"
# shellcheck disable=SC2086
python3 -m local.longform_score --set_dir "${long_set}" --long_dir "${out}/{scale}/long" \
    --clip_dir "${out}/{scale}/clips" --scales ${scales} --out "${asr_exp}/RESULTS_longform.md"
