import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import decode_scales  # noqa: E402

PAPER_SCALES = ["--mode", "avsr", "--audio_frame_rate", "50", "--audio_rates", "4", "16",
                "--video_rates", "2", "5", "--seconds", "8", "--batch_size", "1",
                "--threads", "1", "--clock", "cpu"]
FIGURE = r"(\d+\.\d+) ± (\d+\.\d+)|unreliable \((\d+ samples?|spread ±\d+ %)\)"


@pytest.fixture
def run(monkeypatch, capsys):
    threads = torch.get_num_threads()

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["decode_scales.py", *args])
        decode_scales.main()
        return capsys.readouterr().out

    yield run
    torch.set_num_threads(threads)


def table_rows(out):
    """{scale: [cells after the scale id]} of the printed table."""
    return {cells[0]: cells[1:] for cells in
            (line.strip("| ").split(" | ") for line in out.splitlines() if re.match(r"\| [av]\d", line))}


def test_decode_scales_whisper_frame_rate_gives_the_papers_tokens_per_second(run):
    # At 50 audio frames/s and 25 video frames/s the paper's rates give
    # a4: 12.5 and v2: 12.5 tokens/s, so a4_v2 reads 25 and a16_v5 8.1.
    out = run(*PAPER_SCALES, "--reps", "3", "--new_tokens", "2")
    rows = table_rows(out)
    assert {scale: cells[0] for scale, cells in rows.items()} == {
        "a4_v2": "25.0", "a4_v5": "17.5", "a16_v2": "15.6", "a16_v5": "8.1"}
    assert "audio 50 frames/s" in out
    assert re.search(r"^CPU, \d+ cores, 1 thread, float32, cpu clock;", out, re.M)
    # encoders, prefill, step and RTF: a positive median and its spread, or
    # the word unreliable; never a bare or negative number.
    for cells in rows.values():
        for cell in cells[1:5]:
            figure = re.fullmatch(FIGURE, cell)
            assert figure, cell
            assert figure[1] is None or float(figure[1]) > 0
    assert re.search(r"prefill a16_v5 / a4_v2\nratio: (0\.\d\d ± \d\.\d\d|unreliable \(.*\))\n\Z", out)


def test_decode_scales_prints_what_one_repetition_cannot_measure_as_unreliable(run):
    # One repetition of two steps once printed -732 ms/token: a difference
    # of two totals. Now the step time is measured, and too few samples say so.
    out = run(*PAPER_SCALES, "--reps", "1", "--new_tokens", "2")
    for cells in table_rows(out).values():
        assert cells[1:5] == ["unreliable (1 sample)", "unreliable (1 sample)",
                              "unreliable (2 samples)", "unreliable (1 sample)"]
    assert out.endswith("ratio: unreliable (1 sample)\n")


def test_decode_scales_cpu_clock_needs_one_thread(run):
    with pytest.raises(SystemExit):
        run("--threads", "2", "--clock", "cpu")
