#!/usr/bin/env bash
# The paper's comparison on SynthGRID: at every scale of conf/train_avsr_mtsk.yaml,
# one model per rate (the Llama-AVSR baseline: mode asr, vsr or avsr with a
# single rate per modality) against Matryoshka models with MS-, SS- and
# MSS-LoRA, for each compressor. As in the paper, a Matryoshka model per task
# (mode asr: the audio rates; vsr: the video rates; avsr: their cross
# product); mode "all" adds the recipe's single model for every task. Every
# model gets the same data, stand-in LLM, pre-trained encoders, steps and
# seed; only the overrides below differ. Writes docs/results.md (with
# --max_epoch N, which trains every model N epochs: docs/results_epN.md)
# (python -m local.accuracy_table) from the scored decodings.
#   ./run_compare.sh [--compressors "avgpool stack"] [--loras "ms ss mss"]
#                    [--mtsk_modes "asr vsr avsr all"] [--seeds "0 1"] [--scales "a4 a4_v3"]
#                    [--max_epoch 24]
#                    [--asr_args ...] [--inference_args ...] [--table_only true]
#                    [--baselines "exp/asr_zip_espnet_a2_v1 ..."]
set -euo pipefail

compressors="avgpool stack"
loras="ms ss mss"
mtsk_modes="asr vsr avsr"
seeds="0"
scales=""            # the per-rate models and the table's rows; default: every scale of the config
test_sets="test_clean test_snr0 test_snr5"
train_config=conf/train_avsr_mtsk.yaml
max_epoch=""        # epochs of every model instead of the config's, its warm-up + cosine
                    # cycle stretched to match; the models' tags end in _ep<N>
asr_args=""         # passed to every training (e.g. --max_epoch 1 for a quick check)
inference_args=""
table_only=false    # tabulate the models already scored, train nothing
baselines=""        # ESPnet models for the table (avsr.sh stage-16 folders, run_baseline.sh);
                    # default: every exp/asr_zip_* holding a baseline.json
root=$(cd "$(dirname "$(readlink -f "$0")")/../../.." && pwd)
out=""              # default: docs/results.md, docs/results_ep<N>.md with --max_epoch

. ./path.sh
. utils/parse_options.sh
[ -n "${out}" ] || out=${root}/docs/results${max_epoch:+_ep${max_epoch}}.md

# Stages 1-10 of the main run (data, LLM, encoders, shape files) are shared.
base_stats=exp/asr_stats_$(basename "${train_config}" .yaml)
if ! "${table_only}" && { [ ! -e "${base_stats}/train/text_shape" ] || [ ! -e exp/encoders/video.pth ]; }; then
    ./run.sh --stage 1 --stop_stage 10 --train_config "${train_config}"
fi

given_scales=${scales}   # for the table's command: the default follows the config
[ -n "${scales}" ] || scales=$(python3 -m espnet_mtsk.scales "${train_config}")

variant_config() {
    # variant_config <out.yaml> <compressor> <lora> <seed> <mode or scale>:
    # the base config with these overrides. A mode keeps the base rates of
    # its modalities; a scale makes a model of that scale alone (e.g. a4_v6:
    # mode avsr, audio_rates [4], video_rates [6]).
    python3 - "${train_config}" "${max_epoch}" "$@" <<'PY'
import sys, yaml
from espnet_mtsk.scales import MODES, parse_scale
base, max_epoch, out, compressor, lora, seed, what = sys.argv[1:]
conf = yaml.safe_load(open(base))
conf.update(compressor=compressor, lora=lora, seed=int(seed))
if max_epoch:
    # Same steps per epoch, so the schedule's cycle grows with the epochs.
    cycle = conf.get("scheduler_conf", {})
    if "first_cycle_steps" in cycle:
        cycle["first_cycle_steps"] = cycle["first_cycle_steps"] * int(max_epoch) // conf["max_epoch"]
    conf["max_epoch"] = int(max_epoch)
mc = conf["model_conf"]
if what in MODES:
    mc["mode"] = what
    rates = {m: mc[f"{m}_rates"] for m in MODES[what]}
else:
    rates = {m: [r] for m, r in parse_scale(what).rates}
    mc["mode"] = {("audio",): "asr", ("video",): "vsr"}.get(tuple(rates), "avsr")
for modality in ("audio", "video"):
    mc[f"{modality}_rates"] = rates.get(modality, [])
yaml.safe_dump(conf, open(out, "w"), sort_keys=False)
PY
}

train_and_decode() {
    # train_and_decode <tag> <config>; a scored model is kept.
    [ -e "exp/asr_$1/RESULTS.md" ] && return
    ./run.sh --stage 11 --stop_stage 13 --train_config "$2" \
        --asr_tag "$1" --asr_stats_dir "${base_stats}" \
        --test_sets "${test_sets}" --scale_table_set none --policy_set "" \
        --asr_args "${asr_args}" --inference_args "${inference_args}"
}

conf_dir=exp/compare_configs
mkdir -p "${conf_dir}"
tags=()
run_variant() {
    # run_variant <tag> <compressor> <lora> <seed> <mode or scale>
    local tag=$1${max_epoch:+_ep${max_epoch}}
    shift
    if "${table_only}"; then
        if [ -e "exp/asr_${tag}/RESULTS.md" ]; then tags+=("${tag}"); else echo "not run yet: ${tag}"; fi
        return
    fi
    variant_config "${conf_dir}/${tag}.yaml" "$@"
    train_and_decode "${tag}" "${conf_dir}/${tag}.yaml"
    tags+=("${tag}")
}
for seed in ${seeds}; do
    for compressor in ${compressors}; do
        for scale in ${scales}; do
            run_variant "cmp_${compressor}_rate_${scale}_seed${seed}" "${compressor}" ms "${seed}" "${scale}"
        done
        for lora in ${loras}; do
            for mode in ${mtsk_modes}; do
                suffix=_${mode}
                [ "${mode}" = all ] && suffix=""
                run_variant "cmp_${compressor}_mtsk_${lora}${suffix}_seed${seed}" "${compressor}" "${lora}" "${seed}" "${mode}"
            done
        done
    done
done

if [ -z "${baselines}" ]; then
    for d in exp/asr_zip_*/; do [ -e "${d}baseline.json" ] && baselines+=" ${d%/}"; done
fi
# The decodings of run.sh (its --inference_config conf/decode.yaml, avsr.sh's
# default --inference_model valid.acc.ave.pth), as avsr.sh names them: a
# decoding with another config beside them is not the comparison's.
decode_tag=decode_decode_valid.acc.ave
# shellcheck disable=SC2086
python3 -m local.accuracy_table --exp_dir exp --data_dir dump/raw --decode_tag "${decode_tag}" \
    --test_sets ${test_sets} --scales ${scales} --baselines ${baselines} --out "${out}" \
    --command "cd egs2/synthgrid/avsr1 && ./run_compare.sh --compressors \"${compressors}\" --loras \"${loras}\" --mtsk_modes \"${mtsk_modes}\"${given_scales:+ --scales \"${given_scales}\"} --seeds \"${seeds}\"${max_epoch:+ --max_epoch ${max_epoch}}" \
    "${tags[@]}"
