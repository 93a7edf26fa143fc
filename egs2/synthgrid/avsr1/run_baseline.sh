#!/usr/bin/env bash
# The conventional ESPnet AVSR baseline beside Llama-MTSK, on the same data
# (after the main run, whose frozen encoders and dumped Whisper outputs it
# reuses): ESPnet's ASR task (CTC/attention, conf/train_asr_fused.yaml),
# trained with ESPnet's trainer on the Matryoshka model's frozen audio and
# video encoder outputs, average-pooled to one frame rate and concatenated
# per frame (local/fused_features.py), at each rate pair of --rates:
#   a2_v1:  25 Hz, the video's own rate (audio 50 Hz pooled 2x)
#   a12_v6: 4.2 Hz, the Matryoshka model's coarsest video rate (v6); its
#           coarsest audio rate, a16 (3.1 Hz), has no video rate to meet
#           and leaves CTC fewer frames than GRID's words (6 in 1.5 s)
# Each model is packed (espnet2.bin.pack) and decoded on the test sets by
# avsr.sh stage 16 (ESPnet's beam search), which adds its rows to
# exp/asr_train_avsr_mtsk/RESULTS.md.
#   ./run_baseline.sh [--rates "a2_v1 a12_v6"] [--stage 1] [--stop_stage 4] [--asr_args ...]
set -euo pipefail

stage=1
stop_stage=4
rates="a2_v1 a12_v6"
mtsk_exp=exp/asr_train_avsr_mtsk     # the model whose frozen encoders make the features
mtsk_model=valid.acc.ave.pth
encoder_dir=exp/encoders            # its stage-9 encoders, with their dumped video outputs (if any)
train_config=conf/train_asr_fused.yaml
inference_config=conf/decode_asr_fused.yaml
train_set=train
valid_set=dev
test_sets="test_clean test_snr-5 test_snr0 test_snr5 test_snr10"
asr_args=""          # passed to every training (e.g. --max_epoch 1 for a quick check)
video_dropout=0      # share of training utterances whose video half is zeroed (modality dropout;
                     # 0.3 made the 25 Hz model read audio, but not better with video: docs/synthgrid_history.md)
fused=""            # default: dump/fused, dump/fused_vdrop<p> with --video_dropout p
token_list=exp/asr_fused_tokens/tokens.txt

. ./path.sh
. utils/parse_options.sh
# Models with modality dropout get their own features, folders and rows.
suffix=""
[ "${video_dropout}" = 0 ] || suffix=_vdrop${video_dropout}
fused=${fused:-dump/fused${suffix}}

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (run_baseline.sh) $*"; }

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    # The training and valid sets read the Whisper outputs stage 9 dumped
    # (clean + noisy variants, one utterance each) and the video encoder's
    # outputs it dumped, as the Matryoshka model trains on them. The test
    # sets run both encoders.
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        encoded=dump/encoded/${dset}/speech_encoded.scp
        video_encoded=${encoder_dir}/encoded/${dset}/video_encoded.scp
        dropout=0
        [ "${dset}" = "${train_set}" ] && dropout=${video_dropout}
        log "Stage 1: fused features of ${dset} at ${rates} -> ${fused}/<rates>/${dset}"
        # shellcheck disable=SC2046,SC2086
        python -m local.fused_features --asr_train_config "${mtsk_exp}/config.yaml" \
            --asr_model_file "${mtsk_exp}/${mtsk_model}" --rates ${rates} \
            --data_dir "dump/raw/${dset}" --out_dir "${fused}" --video_dropout "${dropout}" \
            $([ -e "${encoded}" ] && echo --encoded_scp "${encoded}") \
            $([ -e "${video_encoded}" ] && echo --video_encoded_scp "${video_encoded}")
    done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: word token list -> ${token_list}"
    python -m espnet2.bin.tokenize_text --token_type word -f 2- --input "dump/raw/${train_set}/text" \
        --output "${token_list}" --write_vocabulary true \
        --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
fi

for rate in ${rates}; do
    feats=${fused}/${rate}
    exp=exp/asr_$(basename "${train_config}" .yaml)_${rate}${suffix}
    if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
        log "Stage 3: ESPnet training on ${feats} -> ${exp}, packed to ${exp}/model.zip"
        mkdir -p "${exp}"
        dim=$(head -n 1 "${feats}/${train_set}/feats_shape" | cut -d, -f2)
        # shellcheck disable=SC2086
        python -m espnet2.bin.asr_train --config "${train_config}" --input_size "${dim}" \
            --token_type word --token_list "${token_list}" --ngpu 0 --use_preprocessor true \
            --train_data_path_and_name_and_type "${feats}/${train_set}/feats.scp,speech,kaldi_ark" \
            --train_data_path_and_name_and_type "${feats}/${train_set}/text,text,text" \
            --valid_data_path_and_name_and_type "${feats}/${valid_set}/feats.scp,speech,kaldi_ark" \
            --valid_data_path_and_name_and_type "${feats}/${valid_set}/text,text,text" \
            --train_shape_file "${feats}/${train_set}/feats_shape" \
            --valid_shape_file "${feats}/${valid_set}/feats_shape" \
            --resume true --output_dir "${exp}" ${asr_args} > "${exp}/train.log" 2>&1
        python -m espnet2.bin.pack asr --asr_train_config "${exp}/config.yaml" \
            --asr_model_file "${exp}/valid.acc.ave.pth" --outpath "${exp}/model.zip"
    fi
    if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
        log "Stage 4: decoding ${exp}/model.zip on ${test_sets} (avsr.sh stage 16)"
        ./run.sh --stage 16 --stop_stage 16 --test_sets "${test_sets}" --asr_zip "${exp}/model.zip" \
            --asr_zip_tag "espnet_${rate}${suffix}" --asr_zip_data "${feats}" --asr_zip_task avsr \
            --asr_zip_config "${inference_config}"
    fi
done
