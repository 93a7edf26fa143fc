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


def test_mp4_from_a_generator_with_sound_and_encoder_options(tmp_path):
    from espnet_mtsk.fileio import decode_audio, from_pcm16

    made = []

    def frames():  # RGB frames made one at a time, never held together
        for t in range(30):
            made.append(t)
            yield np.full((48, 64, 3), 40 + 5 * t, np.uint8)

    audio = np.zeros(30 * 640, np.float32)
    audio[8000:12000] = 0.3 * np.sin(np.arange(4000) * 0.2)  # 0.5-0.75 s
    write_video_mp4(str(tmp_path / "g.mp4"), frames(), audio=audio, options={"preset": "ultrafast", "crf": "10"})
    assert made == list(range(30))
    decoded, fps = read_video(str(tmp_path / "g.mp4"))
    assert fps == 25 and decoded.shape == (30, 48, 64)
    assert np.abs(decoded[:, 20, 20].astype(float) - (40 + 5 * np.arange(30))).max() <= 2
    sound = from_pcm16(decode_audio(str(tmp_path / "g.mp4"))[0])
    loud = np.flatnonzero(np.abs(sound) > 0.05)  # in place: AAC adds no delay once decoded
    assert abs(loud[0] - 8000) < 40 and abs(loud[-1] - 12000) < 40


def test_mp4_of_no_frames_or_frames_of_two_sizes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video_mp4(str(tmp_path / "a.mp4"), iter([]))
    with pytest.raises(ValueError, match=r"frame 1 is \(16, 16\), the first \(32, 32\)"):
        write_video_mp4(str(tmp_path / "a.mp4"), [np.zeros((32, 32)), np.zeros((16, 16))])
    assert list(tmp_path.iterdir()) == []  # nothing half-written left
