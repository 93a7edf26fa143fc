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
#                     [--variants "late_audio vfr still" --variant_scales "a4 a4_v3 v3"]
# The variants (local/synthgrid/media_variants.py) are the recordings as
# users' media come: the sound track's stream starting 0.4 s after the
# picture's, every 25th frame dropped (a variable frame rate), a still
# picture of the face; each is scored beside the original recordings at
# the same scale. A decoding newer than the model is not redone.
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
variants=""                    # media variants of the recordings (local.synthgrid.media_variants): late_audio vfr still
variant_scales="a4 a4_v3 v3"   # the scales the variants, and the original recordings beside them, are decoded at
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

if [ -n "${variants}" ]; then
    # shellcheck disable=SC2086
    for variant in ${variants}; do
        [ -e "${long_set}_variants/${variant}/recordings.scp" ] && continue
        log "Media variant ${variant} of ${long_set} -> ${long_set}_variants/${variant}"
        python3 -m local.synthgrid.media_variants --set_dir "${long_set}" --variants "${variant}" \
            --out_dir "${long_set}_variants"
    done
fi

out=${asr_exp}/decode_longform_$(basename "${inference_model}" .pth)
# The recordings with VAD and their utterances as clips, each decoded whole,
# at each of ${scales}; the variants' recordings and the original ones
# beside them at each of ${variant_scales}.
jobs=()
for scale in ${scales}; do jobs+=("${scale} long" "${scale} clips"); done
if [ -n "${variants}" ]; then
    for scale in ${variant_scales}; do
        case " ${scales} " in *" ${scale} "*) ;; *) jobs+=("${scale} long") ;; esac
        for variant in ${variants}; do jobs+=("${scale} ${variant}"); done
    done
fi
for job in "${jobs[@]}"; do
    read -r scale what <<< "${job}"
    vad=true
    case "${what}" in
        long) list=${long_set}/recordings.scp ;;
        clips) list=${long_set}/clips.scp; vad=false ;;
        *) list=${long_set}_variants/${what}/recordings.scp ;;
    esac
    dir=${out}/${scale}/${what}
    if [ "${dir}/done" -nt "${asr_exp}/${inference_model}" ]; then
        log "${dir}: decoded by this model already"
        continue
    fi
    log "Transcribing ${list} at ${scale} (--vad ${vad}) -> ${dir}"
    mkdir -p "${dir}"
    # shellcheck disable=SC2046,SC2086
    python3 -m espnet_mtsk.bin.transcribe $(cut -d' ' -f2 "${list}") \
        --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_model}" \
        --scale "${scale}" --crop_size "${crop_size}" --vad "${vad}" \
        --subtitles json --output_dir "${dir}" --progress false ${transcribe_opts} > "${dir}/transcribe.log"
    touch "${dir}/done"
done

log "Scoring -> ${asr_exp}/RESULTS_longform.md"
variant_args=()
if [ -n "${variants}" ]; then
    for variant in ${variants}; do variant_args+=(--variant "${variant}" "${out}/{scale}/${variant}"); done
    # shellcheck disable=SC2206
    variant_args+=(--variant_scales ${variant_scales})
fi
# shellcheck disable=SC2086
python3 -m local.longform_score --set_dir "${long_set}" --long_dir "${out}/{scale}/long" \
    --clip_dir "${out}/{scale}/clips" --scales ${scales} "${variant_args[@]}" --out "${asr_exp}/RESULTS_longform.md"
