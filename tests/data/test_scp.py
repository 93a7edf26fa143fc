"""A data dir's audio read as ESPnet reads it: files, pipes and segments."""

import numpy as np
import pytest
import soundfile as sf

from audio_dirs import LAYOUTS, tones, write_audio_dirs
from espnet_mtsk.data.scp import AudioDirReader


def test_files_pipes_and_segments_read_the_same_audio(tmp_path):
    waves = tones()
    dirs = write_audio_dirs(tmp_path, waves)
    for layout in LAYOUTS:
        reader = AudioDirReader(dirs[layout])
        assert sorted(reader) == sorted(waves)
        for utt, wave in waves.items():
            assert reader[utt].dtype == np.float32
            assert np.array_equal(reader[utt], wave), (layout, utt)
    files, pipes, segments = (AudioDirReader(dirs[layout]) for layout in LAYOUTS)
    assert files.file("u1") == str(tmp_path / "audio" / "u1.wav")
    assert pipes.file("u1") is None and segments.file("u1") is None


def test_stereo_is_averaged_and_a_segment_may_run_to_the_end(tmp_path):
    stereo = np.stack([np.full(16000, 0.5), np.full(16000, 0.25)], 1)
    sf.write(str(tmp_path / "rec.wav"), stereo, 16000, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text(f"rec {tmp_path / 'rec.wav'}\n")
    # 0.7 s is sample 11200, though 0.7 * 16000 is 11199.99...
    (tmp_path / "segments").write_text("a rec 0.7 -1\n")
    np.testing.assert_array_equal(AudioDirReader(tmp_path)["a"], np.full(4800, 0.375, np.float32))


def test_errors_name_the_utterance_and_the_entry(tmp_path):
    sf.write(str(tmp_path / "slow.wav"), np.zeros(800, np.float32), 8000)
    sf.write(str(tmp_path / "whole.wav"), np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    # A command that fails after writing part of a file: not shorter audio.
    cut = f"sh -c 'head -c 10044 {tmp_path / 'whole.wav'}; echo gone >&2; exit 3' |"
    (tmp_path / "wav.scp").write_text(
        f"slow {tmp_path / 'slow.wav'}\nbroken false |\ncut {cut}\nempty true |\n"
    )
    reader = AudioDirReader(tmp_path)
    with pytest.raises(ValueError, match=r"wav.scp: utterance 'slow': .*slow.wav' is 8000 Hz, expected 16000"):
        reader["slow"]
    with pytest.raises(ValueError, match=r"wav.scp: utterance 'broken': 'false \|' exited with status 1"):
        reader["broken"]
    with pytest.raises(ValueError, match=r"wav.scp: utterance 'cut': .* exited with status 3: gone"):
        reader["cut"]
    with pytest.raises(ValueError, match=r"wav.scp: utterance 'empty': cannot read 'true \|'"):
        reader["empty"]
    with pytest.raises(KeyError, match="'gone' is not in .*wav.scp"):
        reader["gone"]
    (tmp_path / "segments").write_text("a slow 0 1\nb elsewhere 0 1\n")
    with pytest.raises(ValueError, match=r"segments: b: expected 'utt_id recording start end' with a recording of"):
        AudioDirReader(tmp_path)
