import re
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import train_step  # noqa: E402


def run_bench(monkeypatch, capsys, *args):
    """train_step.py's output with ``args`` (one thread, CPU clock); the
    test process keeps its thread count."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(sys, "argv", [
        "train_step.py", *args, "--batch_size", "2", "--seconds", "1", "--reps", "3",
        "--threads", "1", "--clock", "cpu"])
    try:
        train_step.main()
    finally:
        torch.set_num_threads(threads)
    return capsys.readouterr().out


def test_train_step_prints_the_floor_and_the_ratio_last(monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, "--train_steps", "2")
    assert re.search(r"^CPU, \d+ cores, 1 thread, float32, cpu clock;", out, re.M)
    times = re.findall(r"^\| ([^|]+) \| ([^|]+) \|$", out, re.M)[1:]
    names = [name for name, _ in times]
    assert names[0] == "encoders (E)" and sum(n.startswith("L a") for n in names) == 4
    for name, cell in times:
        median = re.match(r"(\d+\.\d+) ± \d+\.\d+$|unreliable \(", cell)
        assert median, (name, cell)
        assert median[1] is None or float(median[1]) > 0, (name, cell)
    floor, ratio = re.search(r"\nfloor: (\d\.\d{3}) ± \d\.\d{3}\nratio: (\S+).*\n\Z", out).groups()
    # The floor (E + K L) / (K (E + L)) lies between 1/K (free encoders)
    # and 1 (free LLM).
    assert 1 / 4 < float(floor) < 1
    assert ratio == "unreliable" or float(ratio) > 0


def test_train_step_with_a_real_llm_folder_times_each_lever(monkeypatch, capsys, llm_dir):
    out = run_bench(monkeypatch, capsys, "--llm_dir", llm_dir)
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", out, re.M)[1:]
    assert [name.strip() for name, *_ in rows] == [name for name, _, _ in train_step.LEVERS] + [train_step.AS_CONFIGURED]
    assert rows[0][3].startswith("1.00 ± 0.00") or rows[0][3].startswith("unreliable")
    assert re.search(r"\nper scale and utterance: (\d+\.\d{3} ± \d+\.\d{3}|unreliable.*)\n\Z", out)


def test_train_step_times_the_config_per_weight_dtype(monkeypatch, capsys, llm_dir):
    out = run_bench(monkeypatch, capsys, "--llm_dir", llm_dir, "--dtypes", "float32", "bfloat16")
    rows = re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", out, re.M)[1:]
    assert [name.strip() for name, *_ in rows] == ["the config, weights in float32", "the config, weights in bfloat16"]
    assert re.search(r"\nper scale and utterance: (\d+\.\d{3} ± \d+\.\d{3}|unreliable.*)\n\Z", out)
