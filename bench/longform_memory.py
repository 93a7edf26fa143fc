#!/usr/bin/env python3
"""Long-form transcription: peak memory and speed against the file's length.

Makes a talking-face video of each length (default 2 and 20 minutes) at
1280x720, 25 fps: the SynthGRID recording maker's composited face
(``local.synthgrid.longform``) saying test utterances with pauses, written a
frame at a time; then transcribes each with the recipe's model in a fresh
process (``espnet_mtsk.bin.transcribe``, as a user runs it), sampling that
process's resident memory every 0.5 s. Prints per length the peak resident
memory, the resident memory at each quarter of the run (flat when nothing
grows with the file), the wall time and the real-time factor; last line:
``ratio: X`` = the longest file's peak / the shortest's.

    cd egs2/synthgrid/avsr1     # the data dirs' paths are relative to the recipe
    python ../../../bench/longform_memory.py [--exp exp/asr_train_avsr_mtsk] \\
        [--data_dir data/test_clean] [--minutes 2 20] [--scale a4_v3]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from common import machine


def resident_mib(pid: int) -> float:
    """The resident memory (MiB) of process ``pid`` and its children."""
    total = 0
    for proc in [pid] + _children(pid):
        try:
            with open(f"/proc/{proc}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except FileNotFoundError:
            pass
    return total / 2**20


def _children(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def measure(command: list, interval: float = 0.5):
    """Runs ``command`` -> (wall seconds, [(elapsed, resident MiB)])."""
    samples = []
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(proc.stderr.read()))
    reader.start()
    while proc.poll() is None:
        samples.append((time.perf_counter() - start, resident_mib(proc.pid)))
        time.sleep(interval)
    reader.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{''.join(stderr)[-3000:]}")
    return wall, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, default=Path("exp/asr_train_avsr_mtsk"))
    parser.add_argument("--data_dir", type=Path, default=Path("data/test_clean"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 20])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--scale", default="a4_v3")
    parser.add_argument("--crop_size", type=int, default=32)
    parser.add_argument("--work_dir", type=Path, help="keeps the videos (default: a temporary folder)")
    args = parser.parse_args()
    from espnet_mtsk.cli import native_stderr_silenced
    from local.synthgrid.longform import frame_size, write_talk

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="longform_"))
    work.mkdir(parents=True, exist_ok=True)
    header = machine(torch.device("cpu"), "the model's own dtype")
    print(f"# {header}; {args.size}, scale {args.scale}; model {args.exp}")
    print("| minutes | video MiB | make (s) | peak RSS MiB | RSS at 25/50/75/100 % of the run | wall (s) | RTF |")
    print("|---|---|---|---|---|---|---|")
    peaks = []
    for minutes in args.minutes:
        video = work / f"talk_{minutes:g}min.mp4"
        start = time.perf_counter()
        if not video.exists():
            with native_stderr_silenced():
                write_talk(str(video), str(args.data_dir), minutes * 60, size=frame_size(args.size))
        made = time.perf_counter() - start
        command = [
            sys.executable, "-m", "espnet_mtsk.bin.transcribe", str(video),
            "--asr_train_config", str(args.exp / "config.yaml"),
            "--asr_model_file", str(args.exp / "valid.acc.ave.pth"),
            "--scale", args.scale, "--crop_size", str(args.crop_size), "--progress", "false",
        ]
        wall, samples = measure(command)
        peak = max(m for _, m in samples)
        peaks.append(peak)
        quarters = [samples[min(len(samples) - 1, int(q * len(samples)))][1] for q in (0.25, 0.5, 0.75, 0.999)]
        print(
            f"| {minutes:g} | {video.stat().st_size / 2**20:.1f} | {made:.0f} | {peak:.0f} | "
            f"{' / '.join(f'{q:.0f}' for q in quarters)} | {wall:.0f} | {wall / (minutes * 60):.2f} |",
            flush=True,
        )
    print(f"ratio: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
