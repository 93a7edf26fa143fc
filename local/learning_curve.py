#!/usr/bin/env python3
"""Learning curves of trainings: validation accuracy against training time.

Reads each experiment's ESPnet ``train.log`` (the ``<N>epoch results`` line
of every epoch and the time stamps of the log lines) and gives, per epoch,
the optimizer steps so far, the minutes since the first epoch started
(training, validation and checkpointing; plus a pre-training's, ``--start_logs``), and the validation token accuracy:
the mean over scales and each scale's. Prints a Markdown table and, with
``--png``, plots the mean accuracy against minutes, a line per experiment.

    python -m local.learning_curve exp/asr_lever_base exp/asr_lever_ctc --start_logs - exp/encoders_smollm2/projectors.log --png curve.png
"""

import argparse
import datetime
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence

_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)")
_RESULTS = re.compile(r"(\d+)epoch results: (.*)$")
_SECTION = re.compile(r"\[(\w+)\] ")


class Point(NamedTuple):
    """One epoch of a training: ``steps`` counts every optimizer step so
    far, ``step_seconds`` is the epoch's mean time per step (ESPnet's
    ``train_time``) and ``peak_gb`` the most GPU memory held so far (0 on a
    CPU)."""

    epoch: int
    steps: int
    minutes: float
    acc: float
    per_scale: Dict[str, float]
    step_seconds: float
    peak_gb: float


def _stamp(line: str) -> datetime.datetime:
    match = _STAMP.search(line)
    if match is None:
        raise ValueError(f"no time stamp in log line: {line[:120]}")
    return datetime.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S") + datetime.timedelta(
        milliseconds=int(match.group(2))
    )


def log_minutes(log: Path) -> float:
    """Minutes from the first to the last time-stamped line of a log (a
    pre-training's, say)."""
    stamps = [_stamp(line) for line in log.read_text(errors="replace").splitlines() if _STAMP.search(line)]
    if not stamps:
        raise ValueError(f"{log}: no time-stamped line")
    return (stamps[-1] - stamps[0]).total_seconds() / 60


def parse_results(text: str) -> Dict[str, Dict[str, str]]:
    """``[train] a=1, b=2, [valid] c=3`` -> {"train": {"a": "1", ...}, ...}."""
    sections = {}
    parts = _SECTION.split(text)
    for name, body in zip(parts[1::2], parts[2::2]):
        fields = {}
        for item in body.rstrip(", ").split(", "):
            key, _, value = item.partition("=")
            fields[key] = value
        sections[name] = fields
    return sections


def read_curve(log: Path, start_minutes: float = 0.0) -> List[Point]:
    """The points of one ``train.log``, their minutes counted from
    ``start_minutes`` (time spent before training that belongs to it, such
    as a pre-training); a ValueError naming it when it holds no finished
    epoch."""
    start = None
    points = []
    for line in log.read_text(errors="replace").splitlines():
        if start is None and "epoch started" in line:
            start = _stamp(line)
        match = _RESULTS.search(line)
        if match is None or start is None:
            continue
        sections = parse_results(match.group(2))
        valid = sections["valid"]
        per_scale = {k[len("acc_"):]: float(v) for k, v in valid.items() if k.startswith("acc_")}
        points.append(Point(
            epoch=int(match.group(1)),
            steps=int(sections["train"]["total_count"]),
            minutes=start_minutes + (_stamp(line) - start).total_seconds() / 60,
            acc=float(valid["acc"]),
            per_scale=per_scale,
            step_seconds=float(sections["train"].get("train_time", "nan")),
            peak_gb=float(sections["train"].get("gpu_max_cached_mem_GB", "0")),
        ))
    if not points:
        raise ValueError(f"{log}: no finished epoch")
    return points


def table(curves: Dict[str, List[Point]]) -> str:
    """A Markdown table: one row per experiment and epoch."""
    scales = list(dict.fromkeys(s for points in curves.values() for p in points for s in p.per_scale))
    lines = [
        "| experiment | epoch | steps | minutes | s/step | peak GB | valid acc | " + " | ".join(scales) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(scales),
    ]
    for name, points in curves.items():
        for p in points:
            cells = [f"{p.per_scale[s]:.3f}" if s in p.per_scale else "" for s in scales]
            lines.append(
                f"| {name} | {p.epoch} | {p.steps} | {p.minutes:.1f} | {p.step_seconds:.2f} | {p.peak_gb:.1f} "
                f"| {p.acc:.3f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def plot(curves: Dict[str, List[Point]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot([p.minutes for p in points], [p.acc for p in points], marker="o", label=name)
    ax.set_xlabel("minutes of training, a pre-training included (2 CPU cores)")
    ax.set_ylabel("validation token accuracy (mean of scales)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(cmd: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dirs", nargs="+", type=Path, help="experiment folders holding train.log")
    parser.add_argument("--names", nargs="*", default=None, help="a label per folder (default: its name)")
    parser.add_argument("--start_logs", nargs="*", default=None,
                        help="per folder, the log of a pre-training it starts from, whose minutes "
                        "count towards it (log_minutes), or '-' for none")
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args(cmd)
    names = args.names or [d.name for d in args.exp_dirs]
    logs = args.start_logs or ["-"] * len(args.exp_dirs)
    if len(names) != len(args.exp_dirs) or len(logs) != len(args.exp_dirs):
        parser.error("give one --names label and one --start_logs entry per experiment folder")
    starts = [0.0 if log == "-" else log_minutes(Path(log)) for log in logs]
    curves = {name: read_curve(d / "train.log", start) for name, d, start in zip(names, args.exp_dirs, starts)}
    print(table(curves))
    if args.png is not None:
        plot(curves, args.png)


if __name__ == "__main__":
    main()
