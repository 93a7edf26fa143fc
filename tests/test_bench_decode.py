import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "decode_scales.py"


def test_decode_scales_whisper_frame_rate_gives_the_papers_tokens_per_second():
    # At 50 audio frames/s and 25 video frames/s the paper's rates give
    # a4: 12.5 and v2: 12.5 tokens/s, so a4_v2 reads 25 and a16_v5 8.1.
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--mode", "avsr", "--audio_frame_rate", "50",
         "--audio_rates", "4", "16", "--video_rates", "2", "5", "--seconds", "8",
         "--batch_size", "1", "--reps", "1", "--beam_size", "1", "--new_tokens", "1"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = dict(re.findall(r"^\| (a\d+_v\d+) \| ([\d.]+) \|", out, re.M))
    assert rows == {"a4_v2": "25.0", "a4_v5": "17.5", "a16_v2": "15.6", "a16_v5": "8.1"}
    assert "audio 50 frames/s" in out
    assert re.search(r"prefill a16_v5 / a4_v2\nratio: \d+\.\d\d\n\Z", out)
