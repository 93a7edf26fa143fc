#!/usr/bin/env bash
# Local job launcher with the interface of Kaldi's run.pl:
#   run.sh [--gpu N] [--mem M] [--num_threads N] [JOB=1:N] LOG COMMAND...
# Array jobs run in parallel; "JOB" in LOG and COMMAND becomes the job index.
# Array jobs of one GPU each (--gpu 1) take this machine's GPUs in turn
# (CUDA_VISIBLE_DEVICES); the other resource options are accepted for
# compatibility with slurm.sh and ignored.
set -u
gpu=0
while [[ $# -gt 0 && "$1" == --* ]]; do
    [ "$1" = --gpu ] && gpu=$2
    shift 2
done
var=""; first=1; last=1
if [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}
    shift
fi
log=$1; shift
cmd=$(printf '%q ' "$@")
gpus=()
if [ "$gpu" = 1 ] && [ -n "$var" ] && [ -z "${CUDA_VISIBLE_DEVICES:-}" ] && command -v nvidia-smi >/dev/null; then
    mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader)
fi
pids=()
for ((i = first; i <= last; i++)); do
    l=$log; c=$cmd
    if [ -n "$var" ]; then l=${log//$var/$i}; c=${cmd//$var/$i}; fi
    [ ${#gpus[@]} -gt 0 ] && c="CUDA_VISIBLE_DEVICES=${gpus[$(((i - first) % ${#gpus[@]}))]} $c"
    mkdir -p "$(dirname "$l")"
    (
        echo "# $c"
        echo "# Started at $(date)"
        start=$(date +%s)
        bash -c "$c"
        rc=$?
        echo "# Accounting: time=$(($(date +%s) - start)) threads=1"
        echo "# Ended (code $rc) at $(date)"
        exit $rc
    ) >"$l" 2>&1 &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
if [ $failed -gt 0 ]; then
    echo "$0: $failed of $((last - first + 1)) jobs failed; see ${log}" >&2
    exit 1
fi
