"""A CI-sized run of egs2/synthgrid/avsr1: stages 1-15 on a few utterances."""

import os
import re
import subprocess
from pathlib import Path

import yaml

from espnet_mtsk.scales import matryoshka_scales

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "synthgrid" / "avsr1"
TEST_SETS = ["test_clean", "test_snr-5", "test_snr0", "test_snr5", "test_snr10"]


def test_recipe_stages_1_to_15(tmp_path):
    # The recipe writes data/, dump/ and exp/ where it runs: run a copy made
    # of links to the real files.
    for entry in RECIPE.iterdir():
        if entry.name not in ("data", "dump", "exp", "downloads"):
            (tmp_path / entry.name).symlink_to(entry)
    local_opts = (
        "--train_speakers 2 --dev_speakers 1 --test_speakers 1 --utts_per_speaker 4 "
        "--test_utts_per_speaker 2 --lm_sentences 200"
    )
    proc = subprocess.run(
        [
            "./run.sh", "--stage", "1", "--stop_stage", "15",
            "--local_data_opts", local_opts,
            "--llm_pretrain_opts", "--steps 5 --batch_size 8",
            "--encoder_pretrain_opts", "--epochs 1 --batch_size 4",
            "--asr_args", "--max_epoch 1 --batch_size 4",
            "--inference_args", "--max_new_tokens 3 --beam_size 2",
        ],
        cwd=tmp_path,
        env={**os.environ, "SYNTHGRID": str(tmp_path / "downloads")},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ["train", "dev", *TEST_SETS]:
        assert (tmp_path / "data" / name / "video.scp").exists(), name

    conf = yaml.safe_load((RECIPE / "conf" / "train_avsr_mtsk.yaml").read_text())["model_conf"]
    scales = [s.id for s in matryoshka_scales(conf["mode"], conf["audio_rates"], conf["video_rates"])]
    exp = tmp_path / "exp" / "asr_train_avsr_mtsk"
    for results in (exp / "RESULTS.md", exp / "unpacked" / "RESULTS.md"):
        rows = re.findall(r"^\|(test_[^|]+)\|([^|]+)\|", results.read_text(), re.M)
        assert sorted(rows) == sorted((t, s) for t in TEST_SETS for s in scales), results
    assert (exp / "wer_vs_tokens.png").stat().st_size > 0
    decoded = exp / "decode_decode_valid.acc.ave" / "test_clean" / scales[0]
    assert (decoded / "score_wer" / "result.txt").exists()
    assert len((decoded / "1best_recog" / "text").read_text().splitlines()) == 2
    assert list(exp.glob("*.zip"))
