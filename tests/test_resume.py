"""A training killed with SIGKILL in the middle of an epoch and started again
with the same command resumes from the last epoch's checkpoint and finishes;
its checkpoints hold what trained, and their average decodes."""

import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import torch
import yaml

from conftest import SENTENCES, kill_when_logged, model_config
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from test_cli import _data_args, _datadir

MAX_EPOCH = 3


def training_command(tmp_path, llm_dir, whisper_dir, exp, utterances=32, launcher=(), model_conf=None, **config):
    """The command line of a LoRA training of the tiny model (MS-LoRA, batch
    1 unless ``config`` says otherwise) on ``utterances`` training
    utterances made once under ``tmp_path``, started by ``launcher`` (e.g.
    torchrun's module and options), writing to ``exp``."""
    train, valid = tmp_path / "train", tmp_path / "valid"
    if not train.exists():
        _datadir(train, SENTENCES[:utterances], np.random.default_rng(0))
        _datadir(valid, SENTENCES[:4], np.random.default_rng(1))
    conf = {
        **model_config(llm_dir, whisper_dir, lora=config.pop("lora", "ms")),
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
        **config,
    }
    conf["model_conf"].update(model_conf or {})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    # The unsorted sampler reads only the utterance ids of its "shape" file.
    return [
        sys.executable, "-m", *launcher, "espnet_mtsk.bin.avsr_train", "--config", str(tmp_path / "train.yaml"),
        "--ngpu", "0", "--use_matplotlib", "false", "--resume", "true",
        *_data_args("--train_data_path_and_name_and_type", train),
        *_data_args("--valid_data_path_and_name_and_type", valid),
        "--train_shape_file", str(train / "wav.scp"), "--valid_shape_file", str(valid / "wav.scp"),
        "--output_dir", str(exp),
    ]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_training_resumes_and_finishes(tmp_path, llm_dir, whisper_dir):
    exp = tmp_path / "exp"
    # Enough batches that the kill lands well inside the second epoch.
    command = training_command(tmp_path, llm_dir, whisper_dir, exp)
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    returncode = kill_when_logged(command, tmp_path / "first.log", "2epoch:train:2-2batch", env)
    assert returncode == -signal.SIGKILL
    assert not (exp / "2epoch.pth").exists()
    assert torch.load(exp / "checkpoint.pth", weights_only=False)["reporter"]["epoch"] == 1
    first_epoch = _digest(exp / "1epoch.pth")
    # Resuming checks the folders against the record the start wrote.
    record = (exp / "pretrained_fingerprints.json").read_text()
    assert sorted(r["option"] for r in json.loads(record)) == ["audio_encoder_conf.model_dir", "llm_conf.model_dir"]

    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "The training was resumed using" in proc.stderr
    assert "1epoch:train" not in proc.stderr and f"{MAX_EPOCH}epoch:train" in proc.stderr
    assert _digest(exp / "1epoch.pth") == first_epoch
    assert (exp / "pretrained_fingerprints.json").read_text() == record
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
