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
        noise_db_range=f"{snr}_{snr}", noise_apply_prob=1.0,
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
    pre = AVSRPreprocessor(train=False, llm_dir=llm_dir, noise_scp=scp, noise_apply_prob=1.0)
    speech = np.ones(1000, dtype=np.float32)
    assert np.array_equal(pre("u1", {"speech": speech.copy()})["speech"], speech)
    (tmp_path / "low").mkdir()
    bad = _noise_scp(tmp_path / "low", rate=8000)
    with pytest.raises(ValueError, match="babble.*8000 Hz, expected 16000"):
        AVSRPreprocessor(train=True, llm_dir=llm_dir, noise_scp=bad)


@pytest.mark.parametrize("db_range", ["20_-5", "-5_0_5", "loud"])
def test_a_bad_noise_db_range_is_named(llm_dir, tmp_path, db_range):
    with pytest.raises(ValueError, match=f"noise_db_range .*{db_range}"):
        AVSRPreprocessor(train=True, llm_dir=llm_dir, noise_scp=_noise_scp(tmp_path), noise_db_range=db_range)


def _frames(num=5, side=96, seed=0):
    """(num, side, side) float32 frames, every pixel distinct: a crop's values
    tell where it was taken."""
    rng = np.random.default_rng(seed)
    return rng.permutation(num * side * side).reshape(num, side, side).astype(np.float32)


def _position(crop, video):
    """(top, left) of ``crop`` (T, C, C) in ``video`` (T, H, W), from frame 0."""
    top, left = np.argwhere(video[0] == crop[0, 0, 0])[0]
    return int(top), int(left)


def test_video_crop_in_evaluation_is_the_centre(llm_dir):
    pre = AVSRPreprocessor(train=False, llm_dir=llm_dir, video_crop=88)
    video = _frames()
    out = pre("u1", {"video": video.copy()})["video"]
    assert out.shape == (5, 88, 88) and out.dtype == np.float32
    np.testing.assert_array_equal(out, video[:, 4:92, 4:92])
    # The same again: no randomness outside training.
    np.testing.assert_array_equal(pre("u1", {"video": video.copy()})["video"], out)


def test_video_crop_in_training_is_random_per_utterance(llm_dir):
    pre = AVSRPreprocessor(train=True, llm_dir=llm_dir, video_crop=88)
    video = _frames()
    np.random.seed(3)
    positions = []
    for n in range(20):
        out = pre(f"u{n}", {"video": video.copy()})["video"]
        assert out.shape == (5, 88, 88)
        top, left = _position(out, video)
        assert 0 <= top <= 8 and 0 <= left <= 8
        # One window for every frame of the utterance.
        np.testing.assert_array_equal(out, video[:, top : top + 88, left : left + 88])
        positions.append((top, left))
    assert len(set(positions)) > 10  # 81 windows: 20 draws do not repeat much
    assert len({t for t, _ in positions}) > 3 and len({x for _, x in positions}) > 3
    # A seed repeats the draws.
    np.random.seed(3)
    again = [_position(pre(f"u{n}", {"video": video.copy()})["video"], video) for n in range(20)]
    assert again == positions


def test_video_crop_errors_and_no_op(llm_dir):
    pre = AVSRPreprocessor(train=True, llm_dir=llm_dir, video_crop=88)
    with pytest.raises(ValueError, match="u5: video frames are 96x80, smaller than video_crop 88"):
        pre("u5", {"video": np.zeros((3, 96, 80), np.float32)})
    # Frames already at the crop size pass unchanged, in training too.
    exact = _frames(side=88)
    np.testing.assert_array_equal(pre("u6", {"video": exact.copy()})["video"], exact)
    # video_crop 0 (the default) leaves any size alone.
    for train in (True, False):
        keep = AVSRPreprocessor(train=train, llm_dir=llm_dir)
        video = _frames(side=96)
        np.testing.assert_array_equal(keep("u7", {"video": video.copy()})["video"], video)
    with pytest.raises(ValueError, match="video_crop must be >= 0"):
        AVSRPreprocessor(train=True, llm_dir=llm_dir, video_crop=-1)


def test_video_crop_task_argument(llm_dir):
    from espnet_mtsk.tasks.avsr import AVSRTask

    parser = AVSRTask.get_parser()
    args = parser.parse_args(["--video_crop", "88", "--llm_conf", f"model_dir={llm_dir}"])
    pre = AVSRTask.build_preprocess_fn(args, train=False)
    assert pre.video_crop == 88
    out = pre("u1", {"video": _frames()})["video"]
    assert out.shape == (5, 88, 88)
    assert parser.parse_args([]).video_crop == 0


def test_without_an_llm_folder_video_is_cropped_and_text_refused(tmp_path):
    from espnet_mtsk.tasks.avsr import AVSRTask

    # No folder there: nothing of the LLM is read.
    args = AVSRTask.get_parser().parse_args(
        ["--video_crop", "88", "--llm_conf", f"model_dir={tmp_path / 'no_llm'}"]
    )
    with pytest.raises(FileNotFoundError, match="no_llm"):
        AVSRTask.build_preprocess_fn(args, train=False)
    pre = AVSRTask.build_preprocess_fn(args, train=False, text=False)
    video = _frames()
    np.testing.assert_array_equal(pre("u1", {"video": video.copy()})["video"], video[:, 4:92, 4:92])
    with pytest.raises(ValueError, match=r"u2: has a transcript, but no LLM folder \(llm_dir\)"):
        pre("u2", {"video": video.copy(), "text": "bin blue"})
