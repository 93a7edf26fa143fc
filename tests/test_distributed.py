"""ESPnet's DDP with this task on CPU ranks (gloo, started by torchrun as
``avsr.sh --num_cpu_ranks`` starts them): two ranks with half a batch each
train what one process trains on the whole batch, keep their parameters
identical, write one LoRA-only checkpoint, and a killed run resumes. The
config is the hardest case for DDP: scale-specific adapters (SS-LoRA) with
two of the four scales drawn per step, so half the adapters and projectors
get no gradient in a step."""

import os
import signal
import subprocess

import numpy as np
import torch

from conftest import kill_when_logged
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.tasks.trainer import rank_differences
from test_resume import MAX_EPOCH, training_command

# Measured 2.5e-6 after 3 epochs (AdamW turns float rounding of the summed
# gradients into steps of up to lr); ranks that weight their loss by
# utterances instead of tokens end 3e-2 apart, and adapters that DDP does
# not synchronise 6e-2.
TOLERANCE = 2e-5
TORCHRUN = ("torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")


def _command(tmp_path, llm_dir, whisper_dir, exp, launcher=()):
    # The whole batch: ESPnet gives each rank its share of it.
    command = training_command(
        tmp_path, llm_dir, whisper_dir, exp, utterances=24, launcher=launcher,
        lora="ss", batch_size=4, model_conf={"scales_per_step": 2},
    )
    return command + ["--dist_backend", "gloo"]


def test_two_cpu_ranks_train_as_one_process(tmp_path, llm_dir, whisper_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run(_command(tmp_path, llm_dir, whisper_dir, one), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    command = _command(tmp_path, llm_dir, whisper_dir, two, TORCHRUN)
    log = tmp_path / "first.log"
    assert kill_when_logged(command, log, "2epoch:train:3-3batch", env) == -signal.SIGKILL
    first = log.read_text()
    assert "DDP finds the parameters a step does not use" in first
    assert first.count("The 2 ranks hold the same trained parameters") == 1
    assert not (two / "2epoch.pth").exists()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "The training was resumed using" in proc.stderr
    # Checked after every epoch, and rank 0 alone logs.
    assert proc.stderr.count("The 2 ranks hold the same trained parameters") == MAX_EPOCH - 1

    for epoch in range(1, MAX_EPOCH + 1):
        alone, ranks = torch.load(one / f"{epoch}epoch.pth"), torch.load(two / f"{epoch}epoch.pth")
        assert alone.keys() == ranks.keys()
        assert max((alone[k] - ranks[k]).abs().max().item() for k in alone) < TOLERANCE, epoch
    # One checkpoint, of what trained: LoRA, projectors and the random frozen
    # video encoder; the frozen LLM and Whisper come from their folders.
    assert sorted(p.name for p in two.glob("checkpoint*")) == ["checkpoint.pth"]
    state = torch.load(two / "checkpoint.pth", weights_only=False)["model"]
    assert any(".lora_A.a4_v2." in k for k in state) and any(k.startswith("projectors.") for k in state)
    assert not any(k.startswith("llm.model.") and ".lora_" not in k for k in state)
    assert not any(k.startswith("encoders.audio.") for k in state)
    avsr = AVSR2Text(str(two / "config.yaml"), str(two / "valid.acc.ave.pth"), beam_size=2, max_new_tokens=4)
    rng = np.random.default_rng(1)
    assert isinstance(avsr(speech=rng.standard_normal(12800) * 0.1, video=rng.uniform(0, 255, (20, 24, 24))), str)


def _differences_on_rank(rank, init_file, out_dir):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
        if rank == 1:
            model[1].weight[0, 1] += 1e-7
        model[0].bias.requires_grad_(False)
        model[0].bias[0] = rank  # frozen: not compared
    (out_dir / f"{rank}.txt").write_text("\n".join(rank_differences(model)))
    torch.distributed.destroy_process_group()


def test_rank_differences_name_the_parameters_that_differ(tmp_path):
    torch.multiprocessing.spawn(_differences_on_rank, args=(tmp_path / "init", tmp_path), nprocs=2)
    for rank in range(2):
        assert (tmp_path / f"{rank}.txt").read_text() == "1.weight (by 1.19e-07)"
