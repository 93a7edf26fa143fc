"""utils/run_parallel.sh, which avsr.sh sources for stage 9's jobs: the
jobs run at once with the cores shared among them; the first to fail, or
the script's end, stops the others whole."""

import os
import signal
import subprocess
import time

from conftest import SYNTHGRID_RECIPE

UTIL = SYNTHGRID_RECIPE / "utils" / "run_parallel.sh"
# A job that records its threads, starts a sleep in its process group and
# says so; the sleep's pid tells whether the group was stopped.
SLEEPER = """
sleeper() { echo "${OMP_NUM_THREADS}" > "$1.threads"; sleep 30 & echo $! > "$1.pid"; wait; touch "$1.finished"; }
"""


def script(body: str) -> list:
    return ["bash", "-c", f"set -euo pipefail\n. {UTIL}\n{SLEEPER}\n{body}"]


def alive(pid_file) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def wait_for(path, seconds=20.0):
    end = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def gone(pid_file, seconds=5.0) -> bool:
    end = time.monotonic() + seconds
    while alive(pid_file) and time.monotonic() < end:
        time.sleep(0.05)
    return not alive(pid_file)


def test_jobs_run_at_once_and_share_the_cores(tmp_path):
    # Each waits for the other's file: run one after the other, neither ends.
    body = """
    meet() { echo "${OMP_NUM_THREADS}" > "$1.threads"; touch "$1"
             for _ in $(seq 200); do [ -e "$2" ] && return 0; sleep 0.05; done; return 1; }
    run_parallel "meet a b" "meet b a" "meet c a"
    echo all done
    """
    proc = subprocess.run(script(body), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "all done" in proc.stdout, proc.stderr
    threads = max(1, len(os.sched_getaffinity(0)) // 3)
    assert [(tmp_path / f"{j}.threads").read_text().strip() for j in "abc"] == [str(threads)] * 3


def test_the_first_failure_stops_the_other_jobs_and_the_script(tmp_path):
    body = """
    fail() { while [ ! -s slow.pid ]; do sleep 0.05; done; return 3; }
    run_parallel "sleeper slow" fail
    touch after
    """
    start = time.monotonic()
    proc = subprocess.run(script(body), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - start < 20
    assert gone(tmp_path / "slow.pid")
    assert not (tmp_path / "after").exists() and not (tmp_path / "slow.finished").exists()


def test_an_interrupted_script_stops_its_jobs(tmp_path):
    proc = subprocess.Popen(script('run_parallel "sleeper one" "sleeper two"'), cwd=tmp_path)
    for job in ("one", "two"):
        wait_for(tmp_path / f"{job}.pid")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    assert gone(tmp_path / "one.pid") and gone(tmp_path / "two.pid")
