"""Stage 9's dump of the frozen video encoder's outputs
(local/encoded_video.py): what training reads is what the encoder gives
on the video."""

import numpy as np
import pytest
import torch
import yaml

from conftest import SENTENCES, TINY_VIDEO
from espnet_mtsk.data.encoded import EncodedScpReader
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.tasks.avsr import AVSRTask
from local.encoded_video import main
from test_cli import _datadir


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, llm_dir):
    """Two data dirs, a tiny video encoder config and a checkpoint of its
    encoder (random weights, seeded) -> (root, [dirs], config, encoder)."""
    root = tmp_path_factory.mktemp("encoded_video")
    rng = np.random.default_rng(0)
    dirs = [_datadir(root / "train", SENTENCES[:5], rng), _datadir(root / "dev", SENTENCES[5:8], rng)]
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "video_encoder": "avhubert",
        "video_encoder_conf": TINY_VIDEO,
        "llm_conf": {"model_dir": llm_dir},
        "model_conf": {"mode": "vsr", "video_rates": [2], "projector_hidden_size": 16},
    }))
    torch.manual_seed(0)
    encoder = AVSRTask.build_encoders(AVSRTask.get_parser().parse_args(["--config", str(config)]))["video_encoder"]
    torch.save({f"encoders.video.{k}": v for k, v in encoder.state_dict().items()}, root / "video.pth")
    return root, dirs, config, encoder.eval()


def dump_args(recipe, out, checkpoint=None):
    root, dirs, config, _ = recipe
    return ["--config", str(config), "--llm_dir", "unused", "--checkpoint", str(checkpoint or root / "video.pth"),
            "--data_dirs", *map(str, dirs), "--out_dir", str(out)]


def test_each_utterance_is_the_encoders_output_on_its_video(recipe, tmp_path):
    _, dirs, _, encoder = recipe
    assert main(dump_args(recipe, tmp_path)) == 0
    for data_dir in dirs:
        video = VideoScpReader(str(data_dir / "video.scp"))
        dumped = EncodedScpReader(str(tmp_path / data_dir.name / "video_encoded.scp"))
        assert sorted(dumped) == sorted(video)
        for utt in video:
            frames = torch.from_numpy(np.asarray(video[utt], dtype=np.float32))[None]
            with torch.no_grad():
                expected, _, _ = encoder(frames, torch.tensor([len(frames[0])]))
            assert dumped[utt].shape == (len(frames[0]), TINY_VIDEO["d_model"])
            np.testing.assert_allclose(dumped[utt], expected[0].numpy(), rtol=2e-3, atol=2e-3)


def test_a_checkpoint_of_another_encoder_is_an_error(recipe, tmp_path, caplog):
    torch.save({"encoders.video.nothing": torch.zeros(1)}, tmp_path / "bad.pth")
    assert main(dump_args(recipe, tmp_path / "out", checkpoint=tmp_path / "bad.pth")) == 1
    assert "bad.pth: does not fit the video encoder" in caplog.text
    assert not (tmp_path / "out" / "train" / "video_encoded.scp").exists()
