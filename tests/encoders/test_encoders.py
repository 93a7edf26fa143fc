import pytest
import torch

from conftest import TINY_VIDEO
from espnet_mtsk.encoders.avhubert import AVHubertVideoEncoder
from espnet_mtsk.encoders.whisper import HFWhisperEncoder


def test_whisper_from_local_folder_keeps_real_frames(whisper_dir):
    enc = HFWhisperEncoder(model_dir=whisper_dir).eval()
    speech = torch.randn(2, 32000) * 0.1
    lens = torch.tensor([32000, 8000])  # 2.0 s and 0.5 s
    hs, olens, _ = enc(speech, lens)
    assert olens.tolist() == [100, 25]  # 50 frames per second, at least 25
    assert hs.shape == (2, 100, 32) and enc.output_size() == 32


def test_whisper_folder_missing_parts_is_named(whisper_dir, tmp_path):
    (tmp_path / "config.json").write_text((__import__("pathlib").Path(whisper_dir) / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="lacks preprocessor_config.json"):
        HFWhisperEncoder(model_dir=str(tmp_path))


def test_avhubert_shapes_and_padding_invariance():
    torch.manual_seed(0)
    enc = AVHubertVideoEncoder(**TINY_VIDEO).eval()
    video = torch.rand(2, 9, 24, 24) * 255
    lens = torch.tensor([9, 5])
    hs, olens, _ = enc(video, lens)
    assert hs.shape == (2, 9, 32) and olens.tolist() == [9, 5]
    alone, _, _ = enc(video[1:, :5], lens[1:])
    assert torch.allclose(hs[1, :5], alone[0], atol=1e-4)


def test_avhubert_trains_end_to_end_and_rejects_bad_shapes():
    enc = AVHubertVideoEncoder(**TINY_VIDEO)
    hs, _, _ = enc(torch.rand(1, 6, 24, 24) * 255, torch.tensor([6]))
    hs.sum().backward()
    assert enc.feature_extractor_video.resnet.frontend3D[0].weight.grad.abs().sum() > 0
    assert enc.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="video must be"):
        enc(torch.rand(1, 6, 24), torch.tensor([6]))
