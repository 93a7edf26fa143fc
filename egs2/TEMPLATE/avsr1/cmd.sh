# Job back ends, as in ESPnet: "local" runs jobs on this machine,
# "slurm" submits them (extra sbatch flags in $SLURM_SBATCH_OPTS).
cmd_backend=${cmd_backend:-local}
case "${cmd_backend}" in
    local) train_cmd="utils/run.sh"; cuda_cmd="utils/run.sh"; decode_cmd="utils/run.sh" ;;
    slurm) train_cmd="utils/slurm.sh"; cuda_cmd="utils/slurm.sh"; decode_cmd="utils/slurm.sh" ;;
    *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2; return 1 ;;
esac
