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


def test_whisper_full_window_is_hf_forward_and_short_windows_cut_the_input(whisper_dir):
    """The tiny Whisper's window is 2 s (100 states). Its own forward insists
    on the full window; ours runs any window."""
    full = HFWhisperEncoder(model_dir=whisper_dir).eval()
    speech = torch.randn(2, 16000) * 0.1
    lens = torch.tensor([16000, 12000])
    with torch.no_grad():
        hs, olens, _ = full(speech, lens)
        feats = full.feature_extractor(
            [x[:n].numpy() for x, n in zip(speech, lens)], sampling_rate=16000,
            padding="max_length", max_length=32000, return_tensors="pt",
        ).input_features
        assert torch.equal(hs, full.encoder(feats).last_hidden_state[:, :50])
        for window, states in ((1.2, 60), ("longest", 50)):
            short = HFWhisperEncoder(model_dir=whisper_dir, window=window).eval()
            assert short.window_states(16000) == states
            hs_short, olens_short, _ = short(speech, lens)
            assert hs_short.shape == hs.shape and torch.equal(olens_short, olens)
            # Less padding to attend to: close to the full window's states, not equal.
            assert not torch.allclose(hs_short, hs)
    with pytest.raises(ValueError, match="1.60 s of audio is longer than the Whisper window"):
        HFWhisperEncoder(model_dir=whisper_dir, window=1.2)(torch.zeros(1, 25600), torch.tensor([25600]))
    with pytest.raises(ValueError, match="outside"):
        HFWhisperEncoder(model_dir=whisper_dir, window=3.0)


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
    torch.manual_seed(0)
    enc = AVHubertVideoEncoder(**TINY_VIDEO)
    hs, _, _ = enc(torch.rand(1, 6, 24, 24) * 255, torch.tensor([6]))
    # Not hs.sum(): the final LayerNorm's outputs sum to 0 over features
    # whatever its input, so that loss's gradient is rounding noise.
    (hs * torch.randn_like(hs)).sum().backward()
    assert enc.feature_extractor_video.resnet.frontend3D[0].weight.grad.abs().sum() > 0
    assert enc.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="video must be"):
        enc(torch.rand(1, 6, 24), torch.tensor([6]))


def test_avhubert_stem_equals_its_3d_convolution():
    """The stem run frame by frame (a 2-D convolution over stacked
    neighbours) gives the 3-D convolution's outputs and weight gradient,
    in training (batch statistics) and in evaluation."""
    torch.manual_seed(0)
    front = AVHubertVideoEncoder(**TINY_VIDEO).feature_extractor_video.resnet
    x = torch.randn(2, 1, 7, 24, 20)
    for train in (True, False):
        front.train(train)
        reference = front.frontend3D(x)
        bsz, chans, time, height, width = reference.shape
        reference = reference.transpose(1, 2).reshape(bsz * time, chans, height, width)
        conv = front.frontend3D[0].weight
        (grad_3d,) = torch.autograd.grad(reference.square().sum(), conv)
        stem = front.stem(x)
        (grad_2d,) = torch.autograd.grad(stem.square().sum(), conv)
        torch.testing.assert_close(stem, reference, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad_2d, grad_3d, rtol=1e-4, atol=1e-4)
