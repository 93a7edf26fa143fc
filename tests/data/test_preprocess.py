import numpy as np
import pytest

from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.data.preprocess import AVSRPreprocessor


@pytest.fixture(scope="module")
def pre(llm_dir):
    return AVSRPreprocessor(train=True, llm_dir=llm_dir, av_tolerance=0.2)


def test_text_becomes_lower_case_llm_ids(pre):
    out = pre("u1", {"text": "  BIN Blue AT f ONE now "})
    expected = pre.tokenizer("bin blue at f one now", add_special_tokens=False).input_ids
    assert out["text"].dtype == np.int64 and out["text"].tolist() == expected


def test_empty_transcript_names_the_utterance(pre):
    with pytest.raises(ValueError, match="u7: empty transcript"):
        pre("u7", {"text": "   "})


def test_audio_video_duration_mismatch_names_the_utterance(pre):
    speech = np.zeros(16000, dtype=np.float32)  # 1.00 s
    pre("ok", {"speech": speech, "video": np.zeros((27, 8, 8), np.float32)})  # 1.08 s
    with pytest.raises(ValueError, match=r"u9: audio lasts 1.00 s but video 1.60 s"):
        pre("u9", {"speech": speech, "video": np.zeros((40, 8, 8), np.float32)})


def test_wrong_shapes_name_the_utterance(pre):
    with pytest.raises(ValueError, match="u3: expected mono audio"):
        pre("u3", {"speech": np.zeros((10, 2), np.float32)})
    with pytest.raises(ValueError, match="u4: expected video"):
        pre("u4", {"video": np.zeros((10, 8), np.float32)})


def test_collate_pads_and_names_an_utterance_without_video():
    collate = AVSRCollateFn()
    utts, batch = collate([
        ("a", {"speech": np.ones(5, np.float32), "text": np.array([3, 4])}),
        ("b", {"speech": np.ones(3, np.float32), "text": np.array([5])}),
    ])
    assert utts == ["a", "b"]
    assert batch["speech"].shape == (2, 5) and batch["speech_lengths"].tolist() == [5, 3]
    assert batch["text"].tolist() == [[3, 4], [5, -1]]
    with pytest.raises(ValueError, match="utterance b has data"):
        collate([
            ("a", {"speech": np.ones(5, np.float32), "video": np.ones((2, 4, 4), np.float32)}),
            ("b", {"speech": np.ones(3, np.float32)}),
        ])


def _noise_scp(tmp_path, rate=16000):
    import soundfile

    rng = np.random.default_rng(1)
    soundfile.write(tmp_path / "babble.wav", rng.normal(0, 0.1, 8000).astype(np.float32), rate)
    scp = tmp_path / "noise.scp"
    scp.write_text(f"babble {tmp_path / 'babble.wav'}\n")
    return str(scp)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0])
def test_training_noise_is_mixed_at_the_drawn_snr(llm_dir, tmp_path, snr):
    pre = AVSRPreprocessor(
        train=True, llm_dir=llm_dir, noise_scp=_noise_scp(tmp_path),
        noise_snr_range=(snr, snr), noise_prob=1.0,
    )
    t = np.arange(20000) / 16000
    speech = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = pre("u1", {"speech": speech.copy()})["speech"]
    assert noisy.shape == speech.shape
    noise = noisy - speech
    measured = 10 * np.log10(np.sum(speech**2) / np.sum(noise**2))
    assert abs(measured - snr) < 0.1


def test_noise_only_in_training_and_at_its_rate(llm_dir, tmp_path):
    scp = _noise_scp(tmp_path)
    pre = AVSRPreprocessor(train=False, llm_dir=llm_dir, noise_scp=scp, noise_prob=1.0)
    speech = np.ones(1000, dtype=np.float32)
    assert np.array_equal(pre("u1", {"speech": speech.copy()})["speech"], speech)
    (tmp_path / "low").mkdir()
    bad = _noise_scp(tmp_path / "low", rate=8000)
    with pytest.raises(ValueError, match="babble.*8000 Hz, expected 16000"):
        AVSRPreprocessor(train=True, llm_dir=llm_dir, noise_scp=bad)
