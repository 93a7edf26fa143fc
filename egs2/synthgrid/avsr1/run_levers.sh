#!/usr/bin/env bash
# Learning per CPU-minute of the real-LLM config: short trainings of
# conf/train_avsr_mtsk_smollm2.yaml, each with one lever changed, validated
# every --valid_every steps, on the data, encoders and dumps of
# `./run.sh --llm smollm2 --stage 1 --stop_stage 10` (run first). Prints the
# curves (local.learning_curve: validation token accuracy against training
# minutes) and plots them to exp/levers/curve.png.
#   ./run_levers.sh [--levers "base projector_ctc"] [--steps 150] [--valid_every 50]
# A lever is conf/levers/<name>.yaml, merged into the base config; its key
# init_projectors: true starts the projectors from stage 9's CTC pre-training
# (avsr.sh --projector_pretrain, exp/encoders_smollm2/projectors.pth).
set -euo pipefail

levers="base projector_ctc"
steps=150
valid_every=50
train_config=conf/train_avsr_mtsk_smollm2.yaml
. ./path.sh
. utils/parse_options.sh

conf_dir=exp/levers
mkdir -p "${conf_dir}"
tags=()
starts=()
projector_log=exp/encoders_smollm2/projectors.log
for lever in ${levers}; do
    init=$(python3 - "${train_config}" "conf/levers/${lever}.yaml" "${conf_dir}/${lever}.yaml" "${steps}" <<'PY'
import sys, yaml
base, overlay, out, steps = sys.argv[1:]
conf = yaml.safe_load(open(base))
extra = yaml.safe_load(open(overlay)) or {}
init = extra.pop("init_projectors", False)
for key, value in extra.items():
    if isinstance(value, dict) and isinstance(conf.get(key), dict):
        conf[key].update(value)
    else:
        conf[key] = value
# One cosine cycle over the lever's steps, so every lever anneals alike.
conf["scheduler_conf"]["first_cycle_steps"] = int(steps)
yaml.safe_dump(conf, open(out, "w"), sort_keys=False)
print("true" if init else "false")
PY
)
    tag=lever_${lever}
    if [ ! -e "exp/asr_${tag}/valid.acc.best.pth" ]; then
        ./run.sh --llm smollm2 --stage 11 --stop_stage 11 --train_config "${conf_dir}/${lever}.yaml" \
            --asr_tag "${tag}" --asr_stats_dir exp/asr_stats_train_avsr_mtsk_smollm2 \
            --projector_pretrain "${init}" \
            --asr_args "--num_iters_per_epoch ${valid_every} --max_epoch $(( steps / valid_every ))"
    fi
    tags+=("exp/asr_${tag}")
    # A lever that starts from the pre-trained projectors is charged their
    # pre-training's minutes.
    if "${init}"; then starts+=("${projector_log}"); else starts+=(-); fi
done
python3 -m local.learning_curve "${tags[@]}" --names ${levers} --start_logs "${starts[@]}" --png "${conf_dir}/curve.png"
