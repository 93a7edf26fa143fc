"""What the benchmarks share: the mini model of the SynthGRID recipe, built
from its YAML with a stand-in LLM, batches shaped like its data, the machine
line of their headers, and repeated timings summarised as median and spread."""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import freeze

ROOT = Path(__file__).resolve().parents[1]
# The benchmarks run as scripts (python bench/x.py); the recipe tooling
# they share (local/) is at the repository root.
sys.path.insert(0, str(ROOT))
from local.standins import build_llama, tokenizer_corpus  # noqa: E402
from local.synthgrid.grammar import random_sentence, transcript  # noqa: E402
MINI_CONFIG = ROOT / "egs2/synthgrid/avsr1/conf/tuning/train_avsr_mtsk_conformer.yaml"
# The recipe's stand-in LLM (egs2/synthgrid/avsr1/run.sh --llm_build_opts).
MINI_LLM = dict(hidden_size=128, num_layers=2, num_heads=4)
# The conformer's subsampling for its output frame rate on 100 Hz features:
# 25 Hz is the recipe's, 50 Hz Whisper's (so audio tokens/s match the paper's).
AUDIO_INPUT_LAYERS = {25: "conv2d", 50: "conv2d2"}
# wall: elapsed time; cpu: this process's CPU time, which other jobs on a
# shared machine change far less, and which equals the elapsed time of a run
# on a free machine only when one thread does the work on the CPU.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = "wall"
# Below this many samples, or with a spread wider than this share of the
# median, a time is printed as unreliable instead of as a number.
MIN_SAMPLES = 3
MAX_RELATIVE_SPREAD = 0.25


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
    freeze(model, args.freeze_param)
    return model


def add_scale_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio_rates", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--video_rates", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--audio_frame_rate", type=int, choices=sorted(AUDIO_INPUT_LAYERS), default=25,
                        help="audio encoder output frames/s (50: Whisper's)")


def build_scaled_model(llm_dir: Path, args: argparse.Namespace, mode: str, **model_conf) -> torch.nn.Module:
    """``build_model`` with the rates and audio frame rate of ``add_scale_args``
    (``model_conf`` overrides the rates, e.g. for one scale)."""
    rates = {"audio_rates": args.audio_rates, "video_rates": args.video_rates, **model_conf}
    return build_model(
        llm_dir, audio_encoder_conf={"input_layer": AUDIO_INPUT_LAYERS[args.audio_frame_rate]},
        mode=mode, **rates,
    )


def add_machine_args(parser: argparse.ArgumentParser) -> None:
    # One thread timed by its CPU time by default: on a machine shared with
    # other jobs, threads that wait for each other's cores make wall times
    # swing several-fold.
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    parser.add_argument("--clock", choices=sorted(CLOCKS),
                        help="cpu: this process's CPU time (needs --threads 1 and the CPU; the default there); "
                             "wall: elapsed time (the default otherwise)")


def set_machine(parser: argparse.ArgumentParser, args: argparse.Namespace, device: torch.device) -> None:
    """Applies --threads and --clock."""
    global _clock
    one_cpu_thread = args.threads == 1 and device.type == "cpu"
    if args.clock == "cpu" and not one_cpu_thread:
        parser.error("--clock cpu stands for elapsed time only with --threads 1 on the CPU")
    torch.set_num_threads(args.threads)
    _clock = args.clock or ("cpu" if one_cpu_thread else "wall")


def now() -> float:
    """Seconds on the clock chosen by --clock."""
    return CLOCKS[_clock]()


def machine(device: torch.device, dtype) -> str:
    """The header line that says what the figures were measured on
    (``dtype``: a torch dtype or a description)."""
    dtype = str(dtype).removeprefix("torch.")
    cores = len(os.sched_getaffinity(0))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    threads = torch.get_num_threads()
    return f"{name}, {cores} cores, {threads} thread{'s' * (threads > 1)}, {dtype}, {_clock} clock"


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


class Progress:
    """Lines on stderr with the time since the start, so a long run shows
    where it is while stdout keeps only the results."""

    def __init__(self):
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed():7.1f} s] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], None]) -> float:
    start = now()
    fn()
    return now() - start


def time_samples(
    fns: Dict[str, Callable[[], None]], reps: int, warmup: int = 1, progress: Optional[Progress] = None
) -> Dict[str, List[float]]:
    """Times (on the --clock clock) of each function, ``reps`` each after
    ``warmup`` runs; the functions take turns within a repetition so drift
    hits all alike, and sample i of every function comes from the same
    repetition."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for rep in range(warmup + reps):
        for name, fn in fns.items():
            t = timed(fn)
            if rep >= warmup:
                times[name].append(t)
        if progress is not None:
            progress(f"repetition {rep + 1 - warmup}/{reps}" if rep >= warmup else "warm-up done")
    return times


class Summary:
    """Median and spread (half the 10-90 % range) of repeated measurements;
    reliable with at least MIN_SAMPLES samples and a spread within
    MAX_RELATIVE_SPREAD of the median."""

    def __init__(self, samples: Sequence[float]):
        if not samples or min(samples) <= 0:
            raise ValueError(f"a time or ratio must be positive, got {list(samples)}")
        self.n = len(samples)
        self.median = statistics.median(samples)
        if self.n >= 2:
            deciles = statistics.quantiles(samples, n=10, method="inclusive")
            self.spread = (deciles[-1] - deciles[0]) / 2
        else:
            self.spread = float("nan")
        self.reliable = self.n >= MIN_SAMPLES and self.spread <= MAX_RELATIVE_SPREAD * self.median

    def format(self, scale: float = 1.0, digits: int = 1) -> str:
        """``median ± spread`` (times ``scale``), or why it is not a figure."""
        if self.n < MIN_SAMPLES:
            return f"unreliable ({self.n} sample{'s' * (self.n > 1)})"
        if not self.reliable:
            return f"unreliable (spread ±{100 * self.spread / self.median:.0f} %)"
        return f"{self.median * scale:.{digits}f} ± {self.spread * scale:.{digits}f}"


def ratios(num: Sequence[float], den: Sequence[float]) -> List[float]:
    """Per-repetition ratios of paired samples: drift common to both cancels."""
    return [a / b for a, b in zip(num, den, strict=True)]


def table(rows: Sequence[Sequence], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
