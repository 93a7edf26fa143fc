"""Long-form transcription: speech segments on constructed audio with known
boundaries, subtitles through the subtitle library, a long talking face
whose middle has no face, and files without speech or sound."""

import importlib.util
import json
import logging
import shutil

import numpy as np
import pytest

from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS
from faces import talking_face
from espnet_mtsk.decoding.longform import Segment
from espnet_mtsk.decoding.subtitles import write_subtitles
from espnet_mtsk.decoding.vad import SpeechSegmenter, fixed_windows, merge_close, to_frame_grid

pytest.importorskip("silero_vad")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


@pytest.fixture(scope="module")
def sentences():
    """Six espeak-ng GRID sentences of two voices (float32 at 16 kHz, peak 0.5)."""
    from local.synthgrid.grammar import random_sentence
    from local.synthgrid.speakers import draw_speakers

    rng = np.random.default_rng(0)
    voices = draw_speakers(0, {"test": 2})["test"]
    waves = []
    for i in range(6):
        wave, _ = voices[i % 2].speak(random_sentence(rng), i)
        waves.append((wave / np.abs(wave).max() * 0.5).astype(np.float32))
    return waves


def string_together(pieces):
    """[wave or seconds of silence] -> (wave, [(start, end)] of each wave's
    samples above 1 % of full scale)."""
    parts, truth, at = [], [], 0
    for piece in pieces:
        if isinstance(piece, np.ndarray):
            loud = np.nonzero(np.abs(piece) > 0.01)[0]
            truth.append(((at + loud[0]) / SAMPLE_RATE, (at + loud[-1]) / SAMPLE_RATE))
        else:
            piece = np.zeros(int(piece * SAMPLE_RATE), np.float32)
        parts.append(piece)
        at += len(piece)
    return np.concatenate(parts), truth


def test_frame_grid_merging_and_windows():
    assert to_frame_grid((0.05, 1.01), 10.0) == (0.04, 1.04)
    assert to_frame_grid((-0.1, 3.0), 2.5) == (0.0, 2.48)
    assert merge_close([(0, 1), (1.2, 2), (3, 4)], gap=0.3, longest=10) == [(0, 2), (3, 4)]
    assert merge_close([(0, 1), (1.2, 2)], gap=0.3, longest=1.5) == [(0, 1), (1.2, 2)]
    windows = fixed_windows(7.0, 3.0)
    assert len(windows) == 3 and windows[0][0] == 0 and windows[-1][1] == 7.0
    assert all(b - a <= 3.0 for a, b in windows)
    assert fixed_windows(0.0, 3.0) == []
    with pytest.raises(ValueError, match="no room"):
        SpeechSegmenter(window=0.3)


@needs_espeak
def test_segments_start_and_end_at_the_speech(sentences):
    from local.synthgrid.noise import babble
    from local.synthgrid.speakers import draw_speakers

    wave, truth = string_together([1.0, sentences[0], 1.2, sentences[1], 0.8, sentences[2], 1.0])
    # Babble at 10 dB under the middle sentence only.
    rng = np.random.default_rng(1)
    a, b = (int(t * SAMPLE_RATE) for t in truth[1])
    noise = babble(draw_speakers(1, {"train": 6})["train"], (b - a) / SAMPLE_RATE, rng)
    speech_rms = np.sqrt(np.mean(wave[a:b] ** 2))
    wave[a:b] += noise * speech_rms / np.sqrt(np.mean(noise**2)) / 10 ** (10 / 20)
    spans = SpeechSegmenter(window=3.0)(wave)
    assert len(spans) == len(truth), (spans, truth)
    for (start, end), (true_start, true_end) in zip(spans, truth):
        assert abs(start - true_start) <= 0.3 and abs(end - true_end) <= 0.3, (spans, truth)
        assert round(start * VIDEO_FPS, 6).is_integer() and round(end * VIDEO_FPS, 6).is_integer()
    assert SpeechSegmenter(window=3.0)(np.zeros(5 * SAMPLE_RATE, np.float32)) == []


@needs_espeak
def test_speech_longer_than_the_window_is_split(sentences):
    wave, truth = string_together([0.5] + [x for s in sentences[:4] for x in (s, 0.35)])
    window = 2.5
    spans = SpeechSegmenter(window=window, merge_gap=0.5)(wave)
    assert len(spans) >= 4
    assert all(end - start <= window + 1e-9 for start, end in spans)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))
    # Every sentence's speech lies inside the segments.
    for true_start, true_end in truth:
        inside = sum(max(0.0, min(end, true_end) - max(start, true_start)) for start, end in spans)
        assert inside >= 0.95 * (true_end - true_start)


def test_subtitles_round_trip(tmp_path):
    pysubs2 = pytest.importorskip("pysubs2")
    segments = [
        Segment(0.48, 2.12, "bin blue at f two now", "a4_v3", ("audio", "video")),
        Segment(3.04, 5.2, "", "a4_v3", ("audio", "video")),
        Segment(6.0, 8.96, "lay red by g nine again", "a4", ("audio",), "no face (in 0% of the frames)"),
    ]
    for fmt in ("srt", "vtt"):
        path = tmp_path / f"talk.{fmt}"
        write_subtitles(str(path), segments, "talk.mp4", duration=9.5)
        events = pysubs2.load(str(path))
        spoken = [s for s in segments if s.text]
        assert [e.text for e in events] == [s.text for s in spoken]
        assert [(e.start, e.end) for e in events] == [(round(s.start * 1000), round(s.end * 1000)) for s in spoken]
        times = [t for e in events for t in (e.start, e.end)]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= 9500
    write_subtitles(str(tmp_path / "talk.json"), segments, "talk.mp4", duration=9.5)
    record = json.loads((tmp_path / "talk.json").read_text())
    assert record["text"] == "bin blue at f two now lay red by g nine again"
    assert record["segments"][2] == dict(start=6.0, end=8.96, text="lay red by g nine again", scale="a4",
                                         modalities=["audio"], why="no face (in 0% of the frames)")
    # Interrupted while writing: neither the file nor a temporary one is left.
    def interrupted(self, path, **kwargs):
        with open(path, "w") as f:
            f.write("1\n00:00:00,480 --> ")
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pysubs2.SSAFile, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_subtitles(str(tmp_path / "cut.srt"), segments, "talk.mp4", duration=9.5)
    assert not list(tmp_path.glob("*cut*"))
    with pytest.raises(ValueError, match=r"talk\.txt: subtitles are written as srt, vtt, json"):
        write_subtitles(str(tmp_path / "talk.txt"), segments, "talk.mp4", duration=9.5)
    assert not (tmp_path / "talk.txt").exists()


needs_mediapipe = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs mediapipe")


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, llm_dir, whisper_dir):
    """A tiny mode-all model's config.yaml and model.pth (2 s Whisper window)."""
    from conftest import write_model_files

    return write_model_files(tmp_path_factory.mktemp("exp"), llm_dir, whisper_dir)


def decoder(folder, **kwargs):
    from espnet_mtsk.decoding.avsr2text import AVSR2Text

    return AVSR2Text(str(folder / "config.yaml"), str(folder / "model.pth"), beam_size=1, max_new_tokens=3, **kwargs)


@pytest.fixture(scope="module")
def avsr(model_folder):
    """The tiny model as an ``AVSR2Text``."""
    return decoder(model_folder)


def face_video(path, wave, face_from, face_to, size=128, lips=True):
    """A moving astronaut face that leaves the picture (a grey frame) from
    ``face_from`` to ``face_to`` seconds, with ``wave`` as its sound; with
    ``lips``, a mouth opening and closing 4 times a second."""
    from espnet_mtsk.data.video import write_video_mp4

    num = int(len(wave) / SAMPLE_RATE * VIDEO_FPS)
    frames = talking_face(num, size, lips)
    frames[int(np.ceil(face_from * VIDEO_FPS)) : int(np.ceil(face_to * VIDEO_FPS))] = 90
    write_video_mp4(str(path), frames, audio=wave)


def lips_first_policy(avsr, folder):
    """policy.json of a policy over a2 and a2_v1 that ignores the sound and
    takes a2_v1 whenever there is a face."""
    from espnet_mtsk.decoding.policy import AdaptivePolicy, OperatingPoint

    width = 2 * avsr.model.encoders["audio"].output_size()
    policy = AdaptivePolicy(conditions=["clean"], scales=["a2", "a2_v1"], modalities=[["audio"], ["audio", "video"]],
                            weights=np.zeros((1, width)), bias=np.zeros(1), wer=np.array([[10.0, 1.0]]),
                            tokens_per_sec=np.array([25.0, 50.0]), points=[OperatingPoint(0.0, None, 50.0, 1.0)])
    policy.save(folder / "policy.json")
    return folder / "policy.json"


@needs_mediapipe
@needs_espeak
def test_faceless_middle_is_decoded_from_the_sound(tmp_path, model_folder, avsr, sentences, caplog, monkeypatch):
    from espnet_mtsk.data import mouth_track
    from espnet_mtsk.decoding.longform import LongForm, transcribe_long

    wave, truth = string_together([0.6, sentences[0][: int(1.6 * SAMPLE_RATE)], 1.0,
                                   sentences[1][: int(1.6 * SAMPLE_RATE)], 1.0,
                                   sentences[2][: int(1.6 * SAMPLE_RATE)], 0.6])
    middle = (truth[1][0] - 0.4, truth[1][1] + 0.4)
    face_video(tmp_path / "talk.mp4", wave, *middle)
    transcriber = LongForm(avsr, "a2_v1", crop_size=24, batch_size=2)
    with caplog.at_level(logging.INFO):
        plan = transcriber.plan(str(tmp_path / "talk.mp4"))
        segments = list(transcriber(plan))
    assert len(segments) == 3
    assert [s.scale for s in segments] == ["a2_v1", "a2", "a2_v1"]
    assert [s.modalities for s in segments] == [("audio", "video"), ("audio",), ("audio", "video")]
    assert all(isinstance(s.text, str) for s in segments)
    assert "decoding from the sound alone" in caplog.text
    assert f"{tmp_path / 'talk.mp4'}: no face in 1 of 3 segments" in caplog.text

    # The same face with lips that never move (a photo, a voice-over): by
    # default every segment is decoded, from the sound alone; a segment is
    # left out only when asked.
    face_video(tmp_path / "listener.mp4", wave, *middle, lips=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        heard = transcribe_long(avsr, str(tmp_path / "listener.mp4"), "a2_v1", crop_size=24)
    assert [(s.scale, s.modalities) for s in heard] == [("a2", ("audio",))] * 3
    assert [s.why.split(" (")[0] for s in heard] == ["lips still", "no face", "lips still"]
    assert "lips still in 2 of 3 segments" in caplog.text and "no face in 1 of 3 segments" in caplog.text
    skipped = transcribe_long(avsr, str(tmp_path / "listener.mp4"), "a2_v1", crop_size=24, still_lips="skip")
    assert [(s.scale, s.modalities) for s in skipped] == [("", ()), ("a2", ("audio",)), ("", ())]
    assert skipped[0].text == skipped[2].text == ""

    # Lips that move in the last segment: the picture shows its talker, and
    # the first segment, where that face is still, is not its speech
    # (babble behind a listener); "audio" decodes it all the same.
    from espnet_mtsk.data.video import write_video_mp4

    frames = talking_face(len(wave) * VIDEO_FPS // SAMPLE_RATE, 128, lips=True)
    turn_at = int((truth[1][1] + truth[2][0]) / 2 * VIDEO_FPS)  # in the pause before the last sentence
    frames[:turn_at] = talking_face(turn_at, 128, lips=False)

    write_video_mp4(str(tmp_path / "turn.mp4"), frames, audio=wave)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        turn = transcribe_long(avsr, str(tmp_path / "turn.mp4"), "a2_v1", crop_size=24, batch_size=1)
    assert [(s.scale, s.modalities) for s in turn] == [("", ()), ("", ()), ("a2_v1", ("audio", "video"))]
    assert "not transcribed (lips move elsewhere in the file" in turn[0].why and turn[2].why == ""
    assert "2 not transcribed (lips move elsewhere" in caplog.text
    heard = transcribe_long(avsr, str(tmp_path / "turn.mp4"), "a2_v1", crop_size=24, still_lips="audio")
    assert [s.scale for s in heard] == ["a2", "a2", "a2_v1"]

    # The adaptive policy, here one that prefers the lips, chooses per
    # segment: the faceless one from the sound, in a batch of its own.
    adaptive = decoder(model_folder, policy_file=str(lips_first_policy(avsr, tmp_path)))
    chosen = transcribe_long(adaptive, str(tmp_path / "talk.mp4"), "adaptive", crop_size=24, batch_size=3)
    assert [(s.scale, s.modalities) for s in chosen] == [
        ("a2_v1", ("audio", "video")), ("a2", ("audio",)), ("a2_v1", ("audio", "video"))]

    # An audio-only scale never starts the face tracker.
    monkeypatch.setattr(mouth_track.MouthTrack, "__call__", lambda *a: pytest.fail("face tracker started"))
    monkeypatch.setattr("espnet_mtsk.decoding.longform.MouthTrack", mouth_track.MouthTrack)
    audio_only = LongForm(avsr, "a2")
    assert [s.scale for s in audio_only(audio_only.plan(str(tmp_path / "talk.mp4")))] == ["a2"] * 3


@needs_mediapipe
def test_mouth_track_crops_match_the_clip_crops(tmp_path):
    """Streamed crops of a span equal the whole clip's crops of the same
    frames when the span is the clip (both track and smooth the same frames)."""
    from espnet_mtsk.data.mouth_roi import crop_mouth_file
    from espnet_mtsk.data.mouth_track import MouthTrack

    wave = np.zeros(int(1.2 * SAMPLE_RATE), np.float32)
    face_video(tmp_path / "clip.mp4", wave, 9, 9)
    clip = crop_mouth_file(str(tmp_path / "clip.mp4"), 24)
    [(span, crops, found, lips)] = list(MouthTrack(str(tmp_path / "clip.mp4"), 24)([(0.0, 1.2)]))
    assert found == 1.0 and crops.shape == clip.shape == (30, 24, 24) and lips > 0.018
    assert np.array_equal(crops, clip)
    # Two spans in order: each gets its own frames, and the second span's
    # frames past the picture's end count as faceless.
    out = list(MouthTrack(str(tmp_path / "clip.mp4"), 24)([(0.0, 0.4), (0.8, 1.6)]))
    assert [c.shape[0] for _, c, _, _ in out] == [10, 20]
    assert out[1][2] == pytest.approx(0.5)


@needs_mediapipe
def test_no_speech_and_no_sound(tmp_path, avsr, caplog):
    from espnet_mtsk.decoding.longform import LongForm, transcribe_long

    face_video(tmp_path / "quiet.mp4", np.zeros(3 * SAMPLE_RATE, np.float32), 9, 9)
    with caplog.at_level(logging.WARNING):
        assert transcribe_long(avsr, str(tmp_path / "quiet.mp4"), "a2_v1") == []
    assert f"{tmp_path / 'quiet.mp4'}: no speech found: the transcript is empty" in caplog.text
    # Without a sound track, the lips over fixed windows (2 s here).
    from espnet_mtsk.data.video import write_video_mp4

    write_video_mp4(str(tmp_path / "mute.mp4"), talking_face(int(3.4 * VIDEO_FPS)))
    transcriber = LongForm(avsr, "a2_v1", crop_size=24)
    plan = transcriber.plan(str(tmp_path / "mute.mp4"))
    assert plan.speech is None and plan.scale == "v1" and len(plan.spans) == 2
    segments = list(transcriber(plan))
    assert [s.modalities for s in segments] == [("video",), ("video",)]
    assert segments[-1].end == pytest.approx(3.4)
    # As one clip it does not fit the 2 s window: an error naming it.
    with pytest.raises(ValueError, match=rf"{tmp_path / 'mute.mp4'}: 3\.40 s is longer than the model's window \(2 s\)"):
        LongForm(avsr, "a2_v1", crop_size=24, vad=False).plan(str(tmp_path / "mute.mp4"))
