"""local.train_config: what the recipe scripts read from a training config."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from local.train_config import encoders_to_pretrain, main, named_encoders, read_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "conf, named, to_pretrain",
    [
        ({"audio_encoder": "whisper", "video_encoder": "avhubert"}, ["audio", "video"], ["audio", "video"]),
        ({"audio_encoder": "none", "video_encoder": "avhubert"}, ["video"], ["video"]),
        ({"audio_encoder": "whisper", "audio_encoder_conf": {"model_dir": "/w"}, "video_encoder": "avhubert"},
         ["audio", "video"], ["video"]),
        # A null placeholder filled by the run script still means pretrained.
        ({"video_encoder": "avhubert", "video_encoder_conf": {"checkpoint": None}}, ["video"], []),
        ({"audio_encoder": "conformer", "video_encoder": "avhubert", "model_conf": {"mode": "asr"}},
         ["audio", "video"], ["audio"]),
    ],
)
def test_encoders_of_a_config(conf, named, to_pretrain):
    assert named_encoders(conf) == named
    assert encoders_to_pretrain(conf) == to_pretrain


def test_cli_prints_the_modalities(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"audio_encoder": "None", "video_encoder": "avhubert"}))
    main([str(path)])
    assert capsys.readouterr().out == "video\n"
    out = subprocess.run(
        [sys.executable, "-m", "local.train_config", str(path), "--to_pretrain"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert out == "video\n"


def test_a_config_that_is_no_mapping_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        read_config(str(path))
