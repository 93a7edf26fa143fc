"""Stage 9: CTC pre-training of stand-in encoders, loaded by training."""

import numpy as np
import pytest
import torch
import yaml

from conftest import SENTENCES, TINY_VIDEO, training_loads
from local.encoder_pretrain import get_parser, pretrain
from test_cli import _datadir

TINY_CONFORMER = dict(
    output_size=32, attention_heads=2, linear_units=64, num_blocks=1,
    input_layer="conv2d", cnn_module_kernel=3,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, llm_dir):
    root = tmp_path_factory.mktemp("pretrain")
    data = _datadir(root / "train", SENTENCES[:4], np.random.default_rng(0))
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "frontend": "default",
        "frontend_conf": {"n_fft": 400, "hop_length": 160, "n_mels": 40},
        "normalize": "utterance_mvn",
        "audio_encoder": "conformer",
        "audio_encoder_conf": TINY_CONFORMER,
        "video_encoder": "avhubert",
        "video_encoder_conf": TINY_VIDEO,
        "llm_conf": {"model_dir": llm_dir},
        "lora": "ms",
        "model_conf": {"mode": "all", "audio_rates": [2], "video_rates": [2], "projector_hidden_size": 16},
    }))
    return root, data, config


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_pretraining_learns_and_training_loads_it(setup, llm_dir, modality):
    root, data, config = setup
    out = root / f"{modality}.pth"
    args = get_parser().parse_args([
        "--config", str(config), "--llm_dir", llm_dir, "--modality", modality,
        "--train_dir", str(data), "--valid_dir", str(data), "--out", str(out),
        "--epochs", "8", "--batch_size", "2", "--lr", "3e-3", "--eval_dirs", str(data),
    ])
    result = pretrain(args)
    assert result["train_loss"][-1] < 0.7 * result["train_loss"][0], result
    # The eval is the kept epoch's, not the last one's.
    assert result["eval"] == {str(data): result["wer"]}
    state = torch.load(out, weights_only=True)
    assert any(k.startswith(f"encoders.{modality}.") for k in state)
    assert all(k.startswith((f"encoders.{modality}.", "frontend.")) for k in state)
    assert not (root / f"{modality}.pth.tmp").exists()

    training_loads(config, out)


def test_a_config_without_the_encoder_is_an_error(tmp_path, llm_dir, setup):
    root, data, _ = setup
    config = tmp_path / "asr.yaml"
    config.write_text(yaml.safe_dump({
        "frontend": "default",
        "audio_encoder": "conformer",
        "audio_encoder_conf": TINY_CONFORMER,
        "llm_conf": {"model_dir": llm_dir},
        "model_conf": {"mode": "asr", "audio_rates": [2]},
    }))
    args = get_parser().parse_args([
        "--config", str(config), "--llm_dir", llm_dir, "--modality", "video",
        "--train_dir", str(data), "--valid_dir", str(data), "--out", str(tmp_path / "v.pth"),
    ])
    with pytest.raises(ValueError, match="names no video_encoder"):
        pretrain(args)


def test_a_warm_start_begins_from_the_checkpoint(setup, llm_dir, tmp_path):
    root, data, config = setup
    common = ["--config", str(config), "--llm_dir", llm_dir, "--modality", "video",
              "--train_dir", str(data), "--valid_dir", str(data), "--batch_size", "2"]
    first = tmp_path / "first.pth"
    pretrain(get_parser().parse_args([*common, "--out", str(first), "--epochs", "1", "--seed", "1"]))
    # A learning rate of ~0 keeps the encoder where it started.
    again = tmp_path / "again.pth"
    pretrain(get_parser().parse_args([*common, "--out", str(again), "--epochs", "1", "--lr", "1e-12",
                                      "--init", str(first)]))
    start, end = torch.load(first, weights_only=True), torch.load(again, weights_only=True)
    assert start.keys() == end.keys()
    # Batch norm's running statistics move in training whatever the rate.
    weights = [k for k in start if "running_" not in k and "num_batches" not in k]
    assert all(torch.allclose(start[k], end[k], atol=1e-6) for k in weights)
    scratch = tmp_path / "scratch.pth"
    pretrain(get_parser().parse_args([*common, "--out", str(scratch), "--epochs", "1", "--lr", "1e-12"]))
    assert not all(torch.allclose(start[k], torch.load(scratch, weights_only=True)[k], atol=1e-6) for k in weights)

    bad = tmp_path / "bad.pth"
    torch.save({"encoders.video.nothing": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth: does not fit the video encoder"):
        pretrain(get_parser().parse_args([*common, "--out", str(tmp_path / "x.pth"), "--init", str(bad)]))
