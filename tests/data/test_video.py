import numpy as np
import pytest
from espnet2.train.dataset import ESPnetDataset

from espnet_mtsk.data.video import VideoScpReader, read_video, write_video_mp4, write_video_npy


def _smooth(t=10, h=32, w=32):
    yy, xx = np.mgrid[:h, :w]
    return np.stack([(xx * 4 + yy * 2 + 5 * i) % 200 + 20 for i in range(t)]).astype(np.uint8)


def _scp(tmp_path, entries):
    scp = tmp_path / "video.scp"
    scp.write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
    return str(scp)


def test_npy_round_trip_through_espnet_dataset(tmp_path):
    frames = _smooth()
    write_video_npy(str(tmp_path / "a.npy"), frames)
    dataset = ESPnetDataset([(_scp(tmp_path, {"a": tmp_path / "a.npy"}), "video", "video")])
    _, data = dataset["a"]
    assert data["video"].dtype == np.float32 and data["video"].shape == (10, 32, 32)
    assert np.array_equal(data["video"], frames.astype(np.float32))


def test_mp4_round_trip(tmp_path):
    frames = _smooth()
    write_video_mp4(str(tmp_path / "a.mp4"), frames)
    decoded, fps = read_video(str(tmp_path / "a.mp4"))
    assert fps == 25 and decoded.shape == frames.shape
    assert np.abs(decoded.astype(float) - frames).mean() < 8
    assert list(tmp_path.iterdir()) == [tmp_path / "a.mp4"]  # no temp file left


def test_errors_name_utterance_and_file(tmp_path):
    write_video_mp4(str(tmp_path / "good.mp4"), _smooth())
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 50)
    whole = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    np.save(tmp_path / "flat.npy", np.zeros((4, 4)))
    reader = VideoScpReader(_scp(tmp_path, {
        "gone": tmp_path / "gone.mp4", "junk": tmp_path / "junk.mp4",
        "cut": tmp_path / "cut.mp4", "flat": tmp_path / "flat.npy",
    }))
    with pytest.raises(KeyError, match="'nope' is not in .*video.scp"):
        reader["nope"]
    with pytest.raises(FileNotFoundError, match="gone: video file .*gone.mp4 not found"):
        reader["gone"]
    for utt in ("junk", "cut"):
        with pytest.raises(ValueError, match=f"{utt}: .*{utt}.mp4"):
            reader[utt]
    with pytest.raises(ValueError, match=r"flat: .*flat.npy holds shape \(4, 4\)"):
        reader["flat"]


def test_frame_rate_other_than_25_is_named(tmp_path):
    write_video_mp4(str(tmp_path / "a.mp4"), _smooth(), fps=30)
    reader = VideoScpReader(_scp(tmp_path, {"a": tmp_path / "a.mp4"}))
    with pytest.raises(ValueError, match="a: .*a.mp4: frame rate 30 fps"):
        reader["a"]
