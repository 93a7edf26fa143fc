import numpy as np
import pytest
import torch

from local.fused_features import drops_video, fuse, fusion_scales

RATES = {"audio": 50.0, "video": 25.0}


def test_rate_pairs_must_meet_at_one_frame_rate():
    assert [s.id for s in fusion_scales(["a2_v1", "a12_v6"], RATES)] == ["a2_v1", "a12_v6"]
    with pytest.raises(ValueError, match=r"--rates a16_v6: audio at 3.12 Hz, video at 4.17 Hz"):
        fusion_scales(["a16_v6"], RATES)
    with pytest.raises(ValueError, match=r"--rates a4: needs an audio and a video rate"):
        fusion_scales(["a4"], RATES)


def test_fuse_pools_each_modality_and_concatenates_per_frame():
    audio = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
    video = -torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    # The second utterance: 7 audio frames (4 after pooling by 2), 3 video
    # frames: cut to 3, the shorter.
    encoded = {"audio": (audio, torch.tensor([10, 7])), "video": (video, torch.tensor([5, 3]))}
    first, second = fuse(encoded, fusion_scales(["a2_v1"], RATES)[0])
    assert first.shape == (5, 5) and second.shape == (3, 5)
    np.testing.assert_allclose(first[0], [1.5, 2.5, 3.5, 0.0, -1.0])  # mean of audio frames 0-1, video frame 0
    np.testing.assert_allclose(second[2, :3], audio[1, 4:6].mean(0).numpy())
    np.testing.assert_allclose(second[:, 3:], video[1, :3].numpy())


def test_video_dropout_is_drawn_once_per_utterance():
    ids = [f"s{i:02d}_{j:04d}-noisy{k}" for i in range(10) for j in range(30) for k in range(3)]
    dropped = [uid for uid in ids if drops_video(uid, 0.3)]
    assert 0.25 < len(dropped) / len(ids) < 0.35
    assert dropped == [uid for uid in ids if drops_video(uid, 0.3)]  # the same draw on a re-run
    assert not any(drops_video(uid, 0.0) for uid in ids)
