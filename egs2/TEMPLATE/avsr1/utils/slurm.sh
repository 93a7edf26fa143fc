#!/usr/bin/env bash
# Slurm back end with the interface of utils/run.sh:
#   slurm.sh [--gpu N] [--mem M] [--num_threads N] [--num_nodes N] [JOB=1:N] LOG COMMAND...
# Submits one array job with sbatch --wait; extra sbatch flags come from
# $SLURM_SBATCH_OPTS (partition, account, time limit...). With --num_nodes N
# each job holds N nodes and one task per node (--gpu GPUs each): COMMAND
# starts with srun to run on all of them, as ESPnet's multi-node training does.
set -u
sbatch_opts=()
while [[ $# -gt 0 && "$1" == --* ]]; do
    case "$1" in
        --gpu) [ "$2" -gt 0 ] && sbatch_opts+=("--gres=gpu:$2") ;;
        --mem) sbatch_opts+=("--mem=$2") ;;
        --num_threads) sbatch_opts+=("--cpus-per-task=$2") ;;
        --num_nodes) [ "$2" -gt 1 ] && sbatch_opts+=("--nodes=$2" "--ntasks-per-node=1") ;;
        *) echo "$0: unknown option $1" >&2; exit 1 ;;
    esac
    shift 2
done
var=""; first=1; last=1
if [[ "$1" =~ ^([A-Za-z_]+)=([0-9]+):([0-9]+)$ ]]; then
    var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}
    shift
fi
log=$1; shift
cmd=$(printf '%q ' "$@")
if [ -n "$var" ]; then
    cmd=${cmd//$var/\$SLURM_ARRAY_TASK_ID}
    log=${log//$var/%a}
fi
mkdir -p "$(dirname "$log")"
# shellcheck disable=SC2086
sbatch --wait --array="${first}-${last}" --output="$log" ${SLURM_SBATCH_OPTS:-} \
    "${sbatch_opts[@]}" --wrap "$cmd"
