"""What the benchmarks share: the mini model of the SynthGRID recipe, built
from its YAML with a stand-in LLM, and batches shaped like its data."""

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import yaml

from espnet_mtsk.data.synthgrid.grammar import random_sentence, transcript
from espnet_mtsk.standins import build_llama, tokenizer_corpus
from espnet_mtsk.tasks.avsr import AVSRTask

ROOT = Path(__file__).resolve().parents[1]
MINI_CONFIG = ROOT / "egs2/synthgrid/avsr1/conf/train_avsr_mtsk.yaml"
# The recipe's stand-in LLM (egs2/synthgrid/avsr1/run.sh --llm_build_opts).
MINI_LLM = dict(hidden_size=128, num_layers=2, num_heads=4)


def sentences(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [transcript(random_sentence(rng)) for _ in range(n)]


def stand_in_llm(out_dir: Path, **shape) -> Path:
    """A Llama of the recipe's size (or ``shape``) with a tokenizer on GRID text."""
    return build_llama(str(out_dir), tokenizer_corpus(sentences(2000)), 400, **{**MINI_LLM, **shape})


def build_model(
    llm_dir: Path, config: Path = MINI_CONFIG, audio_encoder_conf: Optional[Dict] = None, **model_conf
) -> torch.nn.Module:
    """The model of ``config`` with ``audio_encoder_conf`` and ``model_conf``
    overrides, through the task's parser."""
    conf = yaml.safe_load(config.read_text())
    conf["llm_conf"] = {**conf.get("llm_conf", {}), "model_dir": str(llm_dir)}
    conf["model_conf"] = {**conf["model_conf"], **model_conf}
    conf["audio_encoder_conf"] = {**conf["audio_encoder_conf"], **(audio_encoder_conf or {})}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(conf, f)
        f.flush()
        args = AVSRTask.get_parser().parse_args(["--config", f.name])
    torch.manual_seed(0)
    model = AVSRTask.build_model(args)
    for name in args.freeze_param:
        for p in getattr(model, name).parameters():
            p.requires_grad_(False)
    return model


def make_batch(tokenizer, batch_size: int = 16, seconds: float = 2.0, seed: int = 0) -> Dict:
    """Random speech and 32x32 video of ``seconds`` with GRID transcripts."""
    gen = torch.Generator().manual_seed(seed)
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in sentences(batch_size, seed)]
    width = max(map(len, ids))
    samples, frames = int(seconds * 16000), int(seconds * 25)
    return dict(
        speech=torch.randn(batch_size, samples, generator=gen) * 0.1,
        speech_lengths=torch.full((batch_size,), samples),
        video=torch.rand(batch_size, frames, 32, 32, generator=gen) * 255,
        video_lengths=torch.full((batch_size,), frames),
        text=torch.tensor([x + [-1] * (width - len(x)) for x in ids]),
        text_lengths=torch.tensor([len(x) for x in ids]),
    )


def median_seconds(fns: Dict[str, Callable[[], None]], reps: int, warmup: int = 1) -> Dict[str, float]:
    """Median wall time of each function, interleaved so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, list] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def table(rows: Sequence[Sequence], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
