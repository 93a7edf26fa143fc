"""Stages 3-4 (local/format_data.py): a data dir whose wav.scp lists pipes
or segments comes out as one ESPnet's readers (training's ``sound`` type)
read, with what a data dir of plain files gives."""

import logging

import numpy as np
from espnet2.fileio.sound_scp import SoundScpReader

from audio_dirs import LAYOUTS, SECONDS, tones, write_audio_dirs
from local.format_data import format_dir, main


def test_pipes_and_segments_come_out_as_the_files_do(tmp_path, caplog):
    waves = tones()
    text = "".join(f"{utt} words of {utt}\n" for utt in waves)
    dirs = write_audio_dirs(tmp_path, waves, {"text": text})
    outs = {layout: tmp_path / "out" / layout for layout in LAYOUTS}
    with caplog.at_level(logging.WARNING):
        assert format_dir(dirs["files"], outs["files"], 0.0, 0.9) == 2
        # The command line formats several sets in one process.
        main(["--src", str(tmp_path), "--dst", str(tmp_path / "out"), "--max_duration", "0.9",
              "--sets", *(layout for layout in LAYOUTS if layout != "files")])
    assert caplog.text.count("dropping u1: 1.00 s out of range") == len(LAYOUTS)
    for layout in LAYOUTS:
        for name in ("text", "utt2dur"):
            assert (outs[layout] / name).read_text() == (outs["files"] / name).read_text()
        assert (outs[layout] / "utt2dur").read_text() == "".join(f"{u} {SECONDS[u]:.3f}\n" for u in ("u0", "u2"))
        assert not (outs[layout] / "segments").exists()
        sound = SoundScpReader(str(outs[layout] / "wav.scp"), dtype="float32")
        assert sorted(sound) == ["u0", "u2"]
        for utt in sound:
            rate, wave = sound[utt]
            assert rate == 16000 and np.array_equal(wave, waves[utt]), (layout, utt)
    # Plain files are listed as they are; the others are written out once.
    assert (outs["files"] / "wav.scp").read_text().split("\n")[0].endswith("audio/u0.wav")
    assert (outs["pipes"] / "wav.scp").read_text().split("\n")[0] == f"u0 {outs['pipes']}/data/u0.wav"
    assert sorted(p.name for p in (outs["segments"] / "data").iterdir()) == ["u0.wav", "u2.wav"]
