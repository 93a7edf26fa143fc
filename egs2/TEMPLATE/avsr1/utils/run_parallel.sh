#!/usr/bin/env bash
# Sourced by avsr.sh (and its test): run_parallel, jobs run at once that stop
# together.

run_parallel() {
    # run_parallel <command>...: each command (a string, split into words)
    # as a job of its own, all at once, the cores shared among them (no more
    # threads than cores: small convolutions use a second thread poorly,
    # and oversubscribed threads slow every job several times over). Each
    # job runs in its own process group (job control, set -m), to be
    # stopped whole: launcher, shells, python. The first job to fail stops
    # the others, and so does this script's end (an error, an interrupt):
    # they would run on unseen, holding the cores and writing the files a
    # rerun writes.
    local threads=$(( $(nproc) / $# )) job i
    [ "${threads}" -ge 1 ] || threads=1
    pids=()
    stop_jobs() {
        local pid
        for pid in "${pids[@]}"; do kill -- "-${pid}" 2>/dev/null || true; done
    }
    trap stop_jobs EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    set -m
    for job in "$@"; do
        # shellcheck disable=SC2086
        (export OMP_NUM_THREADS=${threads}; ${job}) &
        pids+=($!)
    done
    set +m
    # Polled: before bash 5.1, wait -n does not say which job ended.
    while [ ${#pids[@]} -gt 0 ]; do
        sleep 1
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[i]}" 2>/dev/null; then
                wait "${pids[i]}"  # a failure ends the script; the EXIT trap stops the others
                unset "pids[i]"
            fi
        done
    done
    trap - EXIT INT TERM
}
