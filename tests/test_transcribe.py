"""Transcribing a user's video as a clip (``--vad false``): a real face
(scikit-image's astronaut) that speaks, with a tiny trained-from-scratch
model packed the ESPnet way. Long files: test_longform.py."""

import importlib.util
import json
import logging
import re

import numpy as np
import pytest

if importlib.util.find_spec("mediapipe") is None:
    pytest.skip("needs mediapipe (tools/install.sh)", allow_module_level=True)
skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2")

from conftest import write_model_files  # noqa: E402
from faces import talking_face  # noqa: E402
from espnet_mtsk.bin import pack  # noqa: E402
from espnet_mtsk.bin.transcribe import main  # noqa: E402
from espnet_mtsk.data.mouth_track import MouthTrack  # noqa: E402
from espnet_mtsk.data.video import write_video_mp4  # noqa: E402
from espnet_mtsk.decoding.avsr2text import AVSR2Text  # noqa: E402
from espnet_mtsk.decoding.longform import LongForm  # noqa: E402
from espnet_mtsk.tasks.avsr import AVSRTask  # noqa: E402
from test_pack import caches  # noqa: E402,F401  (espnet_model_zoo's and our caches in tmp_path)

SECONDS = 0.8


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, llm_dir, whisper_dir):
    """config.yaml, a checkpoint and the scale table of a mode-all model."""
    folder = write_model_files(tmp_path_factory.mktemp("exp"), llm_dir, whisper_dir)
    # Made-up dev numbers: a2_v1 is the most accurate, v1 the best lips-only.
    rows = [("a2", 20, 25), ("a4", 30, 12.5), ("v1", 50, 25), ("v2", 60, 12.5),
            ("a2_v1", 10, 50), ("a2_v2", 15, 37.5), ("a4_v1", 12, 37.5), ("a4_v2", 18, 25)]
    table = {"scales": [dict(scale=s, wer=w, tokens_per_sec=t, rtf=0.1) for s, w, t in rows]}
    (folder / "scale_table.json").write_text(json.dumps(table))
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A talking face at 30 fps with 22.05 kHz sound, the same without sound,
    with twice as long a sound track, a faceless one and a corrupt file."""
    folder = tmp_path_factory.mktemp("videos")
    num = int(SECONDS * 30)
    frames = talking_face(num, 256)
    rate = 22050
    t = np.arange(int(SECONDS * rate)) / rate
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    paths = {name: str(folder / f"{name}.mp4") for name in ("talk", "silent", "long_sound", "noface", "corrupt")}
    write_video_mp4(paths["talk"], frames, fps=30, audio=speech, sample_rate=rate)
    write_video_mp4(paths["long_sound"], frames, fps=30, audio=np.tile(speech, 2), sample_rate=rate)
    write_video_mp4(paths["silent"], frames, fps=30)
    write_video_mp4(paths["noface"], np.full((num, 64, 64), 90, np.uint8), audio=speech, sample_rate=rate)
    with open(paths["talk"], "rb") as f:
        head = f.read(2000)
    with open(paths["corrupt"], "wb") as f:
        f.write(head)
    return paths


def test_media_is_resampled_and_cropped(model_files, videos, caplog):
    avsr = AVSR2Text(str(model_files / "config.yaml"), str(model_files / "model.pth"), beam_size=1, max_new_tokens=2)
    transcriber = LongForm(avsr, "a2_v1", vad=False)
    with caplog.at_level(logging.INFO):
        plan = transcriber.plan(videos["talk"])
        [(span, crops, found, _)] = list(MouthTrack(videos["talk"])(plan.spans))
    assert abs(len(plan.speech) - SECONDS * 16000) < 0.05 * 16000
    assert span == (0.0, SECONDS) and found == 1.0
    assert crops.shape == (int(SECONDS * 25), 88, 88)
    assert "22050 Hz, resampled to 16000" in caplog.text
    silent = transcriber.plan(videos["silent"])
    assert silent.speech is None and silent.scale == "v1"


def test_transcribe_cli(model_files, videos, capsys, caplog, tmp_path):
    args = ["--asr_model_file", str(model_files / "model.pth"), "--beam_size", "2", "--max_new_tokens", "3",
            "--vad", "false"]
    files = [videos[n] for n in ("talk", "noface", "corrupt", "silent")]
    with caplog.at_level(logging.INFO):
        status = main(files + args + ["--scale", "a2_v1", "--verbose", "--subtitles", "srt,json",
                                      "--output_dir", str(tmp_path / "subs")])
    out = capsys.readouterr().out.splitlines()
    # The readable files come out, in order, a timed line each; the corrupt
    # one is named; the faceless one is decoded from its sound.
    assert [line.split()[0] for line in out] == [videos["talk"], videos["noface"], videos["silent"]]
    assert out[0].startswith(f"{videos['talk']} [00:00:00.000 --> 00:00:00.800] ")
    assert status == 1
    assert f"{videos['corrupt']}" in caplog.text
    assert f"{videos['noface']}: no face in 1 of 1 segments" in caplog.text
    assert f"{videos['talk']}: 1 segments, decoded at ['a2_v1']" in caplog.text
    assert f"{videos['noface']}: 1 segments, decoded at ['a2']" in caplog.text
    assert f"{videos['silent']}: 1 segments, decoded at ['v1']" in caplog.text
    record = json.loads((tmp_path / "subs" / "talk.json").read_text())
    assert record["segments"][0]["modalities"] == ["audio", "video"] and record["file"] == videos["talk"]
    assert (tmp_path / "subs" / "silent.srt").exists() and not (tmp_path / "subs" / "corrupt.srt").exists()

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([videos["talk"], videos["silent"]] + args + ["--scale", "auto", "--budget_tokens_per_sec", "30",
                                                                 "--verbose"]) == 0
    assert f"{videos['talk']}: 1 segments, decoded at ['a4_v2']" in caplog.text
    assert f"{videos['silent']}: 1 segments, decoded at ['v1']" in caplog.text
    with caplog.at_level(logging.INFO):
        assert main([videos["talk"]] + args + ["--scale", "auto", "--budget_tokens_per_sec", "5"]) == 1
    assert "no scale fits the budget" in caplog.text


def test_sound_longer_than_picture_is_said_once(model_files, videos, capsys, caplog):
    args = ["--asr_model_file", str(model_files / "model.pth"), "--beam_size", "2", "--max_new_tokens", "3",
            "--scale", "a2_v1", "--vad", "false", "--verbose"]
    with caplog.at_level(logging.INFO):
        assert main([videos["long_sound"]] + args) == 0
    assert capsys.readouterr().out.startswith(f"{videos['long_sound']} [00:00:00.000 --> 00:00:01.6")
    assert re.search(
        rf"{re.escape(videos['long_sound'])}: the sound lasts 1\.6\d s but the picture 0\.8\d s: "
        r"speech past 0\.8\d s is decoded from the sound alone", caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([videos["long_sound"]] + args + ["--av_tolerance", "1"]) == 0
    assert "the sound lasts" not in caplog.text
    # Data files (training, test sets) keep the strict check.
    preprocess = AVSRTask.build_preprocess_fn(
        AVSRTask.get_parser().parse_args(["--config", str(model_files / "model.yaml")]), True
    )
    inputs = {"speech": np.zeros(int(1.6 * 16000), np.float32), "video": np.zeros((20, 88, 88), np.float32)}
    with pytest.raises(ValueError, match=r"utt1: audio lasts 1\.60 s but video 0\.80 s"):
        preprocess("utt1", dict(inputs, text="bin blue"))


def test_quiet_by_default(model_files, videos, tmp_path):
    """Run as a user runs it: stdout has the transcript only; stderr has
    neither MediaPipe's native lines nor library progress bars."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    run = subprocess.run(
        [sys.executable, "-m", "espnet_mtsk.bin.transcribe", videos["talk"], "--vad", "false",
         "--asr_model_file", str(model_files / "model.pth"), "--beam_size", "1", "--max_new_tokens", "2",
         "--scale", "a2_v1"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()] == [videos["talk"]]
    assert run.stderr == ""
    verbose = subprocess.run(
        [sys.executable, "-m", "espnet_mtsk.bin.transcribe", videos["talk"], "--vad", "false", "--verbose",
         "--asr_model_file", str(model_files / "model.pth"), "--beam_size", "1", "--max_new_tokens", "2",
         "--scale", "a2_v1"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert "decoded at ['a2_v1']" in verbose.stderr


def test_packed_model_with_referenced_folders(model_files, videos, llm_dir, whisper_dir, tmp_path, capsys):
    out = tmp_path / "model.zip"
    pack.main(["--asr_train_config", str(model_files / "config.yaml"), "--asr_model_file",
               str(model_files / "model.pth"), "--outpath", str(out), "--inline_max_mb", "0"])
    args = [videos["talk"], "--model_tag", str(out), "--beam_size", "2", "--max_new_tokens", "3", "--vad", "false"]
    capsys.readouterr()
    assert main(args + ["--pretrained_dir", f"llm_conf.model_dir={llm_dir}"]) == 0
    assert capsys.readouterr().out.startswith(videos["talk"])
    with pytest.raises(FileNotFoundError, match=r"llm_conf\.model_dir: (.|\n)*model\.safetensors has \d+ bytes"):
        main(args + ["--pretrained_dir", f"llm_conf.model_dir={whisper_dir}"])


def test_subtitle_names_never_collide(tmp_path):
    from espnet_mtsk.bin.transcribe import subtitle_stems

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a, b = str(tmp_path / "a" / "talk.mp4"), str(tmp_path / "b" / "talk.mp4")
    wav, alone = str(tmp_path / "a" / "talk.wav"), str(tmp_path / "a" / "other.mp4")
    out = str(tmp_path / "subs")
    # Beside each file, only the folder's namesakes clash.
    assert subtitle_stems([a, b, alone], None) == {
        a: tmp_path / "a" / "talk", b: tmp_path / "b" / "talk", alone: tmp_path / "a" / "other"}
    assert subtitle_stems([a, wav], None) == {a: tmp_path / "a" / "talk.mp4", wav: tmp_path / "a" / "talk.wav"}
    # In one output folder, files of different folders gain their folder's name.
    stems = subtitle_stems([a, b, wav, alone], out)
    assert stems == {a: tmp_path / "subs" / "a_talk.mp4", b: tmp_path / "subs" / "b_talk.mp4",
                     wav: tmp_path / "subs" / "talk.wav", alone: tmp_path / "subs" / "other"}
    assert len(set(stems.values())) == 4
    # The same file named twice is one file.
    same = str(tmp_path / "a" / ".." / "a" / "talk.mp4")
    assert subtitle_stems([a, same], out) == {a: tmp_path / "subs" / "talk", same: tmp_path / "subs" / "talk"}
