"""fileio: atomic writes and their clean-up, Kaldi data dirs, media -> 16 kHz."""

import os
import stat

import numpy as np
import pytest

from espnet_mtsk.data.video import write_video_mp4
from espnet_mtsk.fileio import (
    SAMPLE_RATE,
    atomic_path,
    decode_audio,
    read_wav,
    remove_temp_files,
    resample_to_16k,
    to_pcm16,
    write_data_dir,
    write_wav,
)


def test_atomic_path_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "list.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["list.txt"]


@pytest.fixture
def umask():
    """Sets the process's umask for the test; restores it after."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_atomic_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mask, expected):
    # A model trained under umask 022 is readable by the rest of its group.
    umask(mask)
    write_wav(tmp_path / "x.wav", np.zeros(160, np.int16))
    with atomic_path(tmp_path / "model.pth") as tmp, open(tmp, "wb") as f:
        f.write(b"weights")
    with open(tmp_path / "plain", "wb"):
        pass
    assert mode(tmp_path / "plain") == expected
    assert mode(tmp_path / "x.wav") == mode(tmp_path / "model.pth") == expected


def test_an_overwritten_file_keeps_its_mode(tmp_path, umask):
    target = tmp_path / "list.txt"
    target.write_text("old\n")
    target.chmod(0o600)
    with atomic_path(target) as tmp:
        # Never wider than the file it replaces, even while being written.
        assert mode(tmp) == 0o600
        open(tmp, "w").write("new\n")
    assert target.read_text() == "new\n" and mode(target) == 0o600


def test_remove_temp_files_takes_only_atomic_leftovers(tmp_path):
    (tmp_path / "a").mkdir()
    stale = [tmp_path / "a" / ".x.wav.abcd_123.wav", tmp_path / ".text.0123abcd"]
    kept = [tmp_path / "a" / "x.wav", tmp_path / ".hidden", tmp_path / ".y.wav.abcd1234.npy"]
    for path in stale + kept:
        path.write_bytes(b"")
    assert remove_temp_files(str(tmp_path)) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)


def test_write_data_dir_sorts_and_derives_spk2utt(tmp_path):
    write_data_dir(
        tmp_path / "d",
        {
            "wav.scp": {"s2_u1": "/w/3.wav", "s1_u2": "/w/2.wav", "s1_u1": "/w/1.wav"},
            "text": {"s2_u1": "c", "s1_u2": "b", "s1_u1": "a"},
            "utt2spk": {"s2_u1": "s2", "s1_u2": "s1", "s1_u1": "s1"},
        },
    )
    assert (tmp_path / "d" / "wav.scp").read_text() == "s1_u1 /w/1.wav\ns1_u2 /w/2.wav\ns2_u1 /w/3.wav\n"
    assert (tmp_path / "d" / "spk2utt").read_text() == "s1 s1_u1 s1_u2\ns2 s2_u1\n"
    with pytest.raises(ValueError, match=r"video.scp: u1: .*white space"):
        write_data_dir(tmp_path / "e", {"video.scp": {"u1": "/my videos/1.npy"}})


def test_wav_round_trip(tmp_path):
    pcm = to_pcm16(0.5 * np.sin(np.arange(1600) / 5.0))
    write_wav(tmp_path / "x.wav", pcm)
    np.testing.assert_array_equal(read_wav(str(tmp_path / "x.wav")), pcm)


def test_decode_audio_resamples_any_rate_to_16k_and_knows_silence(tmp_path):
    rate, seconds = 22050, 1.0
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
    frames = np.full((25, 16, 16), 128, np.uint8)
    write_video_mp4(str(tmp_path / "a.mp4"), frames, audio=tone, sample_rate=rate)
    pcm, source_rate = decode_audio(str(tmp_path / "a.mp4"))
    assert source_rate == rate and pcm.dtype == np.int16
    assert abs(len(pcm) - SAMPLE_RATE * seconds) < 0.05 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(pcm[2000:14000].astype(np.float32)))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / 12000 - 440) < 5
    write_video_mp4(str(tmp_path / "silent.mp4"), frames)
    assert decode_audio(str(tmp_path / "silent.mp4")) is None
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        decode_audio(str(tmp_path / "bad.mp4"))


def test_resample_to_16k_keeps_length_in_seconds_and_pitch():
    rate = 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)
    pcm = resample_to_16k(tone, rate)
    assert pcm.dtype == np.int16 and len(pcm) == SAMPLE_RATE
    assert abs(np.argmax(np.abs(np.fft.rfft(pcm.astype(np.float32)))) - 440) <= 1
    assert len(resample_to_16k(np.zeros(0, np.float32), rate)) == 0
