"""avsr.sh stage 9 runs its jobs (the audio encoder dump, the encoder
pre-training, the video encoder's outputs) one after another: a failing
one stops the stage and names its log, and stopping the stage stops the
job."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import link_recipe

# Stand-in python: the config's encoder to pre-train is the video one; the
# job whose module is $FAIL fails at once, the others take $WAIT seconds
# (their pids in $PIDS) after logging a pre-training's summary line.
FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
    *local.train_config*) echo video ;;
    *"-m ${FAIL} "*) echo "bad input" >&2; exit 1 ;;
    *) echo $$ >> "${PIDS}"; echo "$(date +%s.%N) $*" >> "${PIDS}.calls"; echo "${OMP_NUM_THREADS}" >> "${PIDS}.threads"
       echo "valid greedy WER 90.0 % (an epoch)"
       echo "$(echo "$*" | sed -n 's/.*--out \\([^ ]*\\).*/\\1/p'): epoch 1, valid greedy WER 0.0 %"
       exec sleep "${WAIT}" ;;
esac
"""


def stage_9(tmp_path, fail, wait, *options):
    """avsr.sh --stage 9 (pre-training the video encoder, and the dump) in
    a copy of the recipe, started: (its process, the recipe folder)."""
    recipe = link_recipe(tmp_path / "recipe")
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    proc = subprocess.Popen(
        ["./avsr.sh", "--stage", "9", "--stop_stage", "9", "--train_set", "train", "--valid_set", "dev",
         "--test_sets", "test", "--train_config", "conf/train_avsr_mtsk.yaml", "--python", str(python),
         "--encoder_pretrain", "true", "--encoder_dump", "true", *options],
        cwd=recipe, env={**os.environ, "FAIL": fail, "WAIT": str(wait), "PIDS": str(tmp_path / "pids")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    return proc, recipe


def calls(tmp_path):
    """The stand-in jobs' command lines, in the order they started."""
    path = tmp_path / "pids.calls"
    return [line.split(maxsplit=1)[1] for line in path.read_text().splitlines()] if path.exists() else []


def job_pids(tmp_path):
    pids = tmp_path / "pids"
    return [int(p) for p in pids.read_text().split()] if pids.exists() else []


def running(pid):
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


@pytest.fixture
def end_jobs(tmp_path):
    """Kills the stand-in jobs a failed test leaves running."""
    yield
    for pid in job_pids(tmp_path):
        if running(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("failing, log", [
    ("espnet_mtsk.bin.dump_encoded", "dump/encoded/train/dump.log"),
    ("local.encoder_pretrain", "exp/encoders/video.log"),
], ids=["dump fails", "pre-training fails"])
def test_a_failing_job_stops_the_stage_and_names_its_log(tmp_path, end_jobs, failing, log):
    proc, recipe = stage_9(tmp_path, failing, 0)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode != 0
    assert f"avsr.sh: stage 9: a job failed; see {log}" in stderr, stderr
    assert "bad input" in (recipe / log).read_text()
    assert not any("local.encoded_video" in line for line in calls(tmp_path))


def test_stopping_the_stage_stops_its_job(tmp_path, end_jobs):
    proc, _ = stage_9(tmp_path, "nothing", 30)
    assert wait_until(lambda: len(job_pids(tmp_path)) == 1, 10)
    proc.terminate()
    proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert wait_until(lambda: not any(map(running, job_pids(tmp_path))), 5)


def test_jobs_that_succeed_finish_the_stage(tmp_path, end_jobs):
    proc, recipe = stage_9(tmp_path, "nothing", 1)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    # The video encoder beside the audio dump of train and dev, then the
    # video encoder's outputs; the pre-training's summary line is printed.
    assert len(job_pids(tmp_path)) == 4
    assert "exp/encoders/video.pth: epoch 1, valid greedy WER 0.0 %" in stdout
    assert "valid greedy WER 90.0 %" not in stdout
    assert (recipe / "dump/encoded/dev/dump.log").exists()


def test_pretraining_on_a_set_of_its_own_then_the_video_features(tmp_path, end_jobs):
    wait = 1
    proc, recipe = stage_9(tmp_path, "nothing", wait, "--encoder_pretrain_set", "pretrain")
    _, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    started = [line.split(maxsplit=1) for line in (tmp_path / "pids.calls").read_text().splitlines()]
    # One job after another, each with every core: the audio dump of train
    # and dev, the pre-training, then the video encoder's outputs.
    order = ["dump_encoded", "dump_encoded", "local.encoder_pretrain", "local.encoded_video"]
    assert [next(m for m in order if m in c) for _, c in started] == order, started
    times = [float(t) for t, _ in started]
    assert all(b - a >= wait - 0.2 for a, b in zip(times, times[1:])), times
    threads = (tmp_path / "pids.threads").read_text().split()
    assert threads[2] == subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), threads
    pretrain, features = started[2][1], started[3][1]
    assert "--train_dir dump/raw/pretrain" in pretrain and "--eval_dirs dump/raw/train" in pretrain
    assert "--checkpoint exp/encoders/video.pth" in features
    assert features.endswith("--data_dirs dump/raw/train dump/raw/dev")
