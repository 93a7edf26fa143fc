"""A training killed with SIGKILL in the middle of an epoch and started again
with the same command resumes from the last epoch's checkpoint and finishes;
its checkpoints hold what trained, and their average decodes."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch
import yaml

from conftest import SENTENCES, model_config
from espnet_mtsk.bin.avsr_inference import AVSR2Text
from test_cli import _data_args, _datadir

MAX_EPOCH = 3


def _command(tmp_path, llm_dir, whisper_dir):
    # Enough batches that the kill lands well inside the second epoch.
    train = _datadir(tmp_path / "train", SENTENCES[:32], np.random.default_rng(0))
    valid = _datadir(tmp_path / "valid", SENTENCES[:4], np.random.default_rng(1))
    config = {
        **model_config(llm_dir, whisper_dir, lora="ms"),
        "freeze_param": ["encoders"],
        "save_strategy": "required_grad_only",
        "optim": "adamw",
        "optim_conf": {"lr": 0.01},
        "batch_type": "unsorted",
        "batch_size": 1,
        "max_epoch": MAX_EPOCH,
        "num_workers": 0,
        "log_interval": 1,
        "best_model_criterion": [["valid", "acc", "max"]],
        "keep_nbest_models": MAX_EPOCH,
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    # The unsorted sampler reads only the utterance ids of its "shape" file.
    return [
        sys.executable, "-m", "espnet_mtsk.bin.avsr_train", "--config", str(tmp_path / "train.yaml"),
        "--ngpu", "0", "--use_matplotlib", "false", "--resume", "true",
        *_data_args("--train_data_path_and_name_and_type", train),
        *_data_args("--valid_data_path_and_name_and_type", valid),
        "--train_shape_file", str(train / "wav.scp"), "--valid_shape_file", str(valid / "wav.scp"),
        "--output_dir", str(tmp_path / "exp"),
    ]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_training_resumes_and_finishes(tmp_path, llm_dir, whisper_dir):
    command = _command(tmp_path, llm_dir, whisper_dir)
    exp = tmp_path / "exp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = tmp_path / "first.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while "2epoch:train:2-2batch" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (exp / "2epoch.pth").exists()
    assert torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"]["epoch"] == 1
    first_epoch = _digest(exp / "1epoch.pth")

    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "The training was resumed using" in proc.stderr
    assert "1epoch:train" not in proc.stderr and f"{MAX_EPOCH}epoch:train" in proc.stderr
    assert _digest(exp / "1epoch.pth") == first_epoch
    states = torch.load(exp / "checkpoint.pth", weights_only=False)
    assert states["reporter"]["epoch"] == MAX_EPOCH
    assert not list(exp.glob("*.tmp"))

    # Only what trained (and the random frozen video encoder) is saved; the
    # average of the epochs decodes with Whisper and the LLM from their folders.
    for state in (states["model"], torch.load(exp / "valid.acc.ave.pth")):
        assert any(".lora_A." in k for k in state) and any(k.startswith("encoders.video.") for k in state)
        assert not any(k.startswith("encoders.audio.") for k in state)
        assert not any(k.startswith("llm.model.") and ".lora_" not in k for k in state)
    avsr = AVSR2Text(str(exp / "config.yaml"), str(exp / "valid.acc.ave.pth"), beam_size=2, max_new_tokens=4)
    rng = np.random.default_rng(1)
    assert isinstance(avsr(speech=rng.standard_normal(12800) * 0.1, video=rng.uniform(0, 255, (20, 24, 24))), str)
