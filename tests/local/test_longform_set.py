"""The long-form SynthGRID set (local.synthgrid.longform) and its scorer
(local.longform_score)."""

import importlib.util
import json

import numpy as np
import pytest

from espnet_mtsk.data.video import write_video_npy
from espnet_mtsk.fileio import (
    SAMPLES_PER_FRAME,
    decode_audio,
    from_pcm16,
    read_wav,
    to_pcm16,
    write_data_dir,
    write_wav,
)
from local.longform_score import main as score_main
from local.longform_score import read_set, score_scale
from local.synthgrid.render import draw_mouth, random_appearance
from local.synthgrid.seeding import rng_for

RATE = 16000
# (lead silence, "speech", tail silence) in samples: lengths off the 640
# grid, so the builder pads one utterance and cuts another to its frames.
UTTS = {"s01_0001": (4000, 12000, 3000), "s01_0002": (3500, 16500, 3900), "s01_0003": (5000, 10000, 2900)}
TEXTS = dict(zip(UTTS, ("bin blue at f two now", "lay red by g nine soon", "set white in z one again")))


def _needs_mediapipe():
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("needs mediapipe (tools/install.sh)")
    pytest.importorskip("skimage.data")
    pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory):
    """A data dir of one speaker's 3 utterances: every "speech" sample is
    loud (|x| >= 0.1) between exact silences; mouths drawn from random
    articulations; and a noise scp of one white-noise file."""
    root = tmp_path_factory.mktemp("test_set")
    rng = np.random.default_rng(0)
    look = random_appearance(rng)
    tables = {"wav.scp": {}, "video.scp": {}, "text": TEXTS, "utt2spk": {u: "s01" for u in UTTS}}
    for utt, (lead, speech, tail) in UTTS.items():
        loud = rng.uniform(0.1, 0.3, speech) * rng.choice([-1, 1], speech)
        wave = np.concatenate([np.zeros(lead), loud, np.zeros(tail)])
        frames = int(round(len(wave) / SAMPLES_PER_FRAME))
        params = np.clip(np.cumsum(rng.normal(0, 0.15, (frames, 5)), axis=0) * 0.3 + 0.4, 0, 1)
        mouths = draw_mouth(params, look, 32, np.zeros((frames, 2))) + rng.normal(0, 3, (frames, 32, 32))
        tables["wav.scp"][utt] = str(root / f"{utt}.wav")
        tables["video.scp"][utt] = str(root / f"{utt}.npy")
        write_wav(tables["wav.scp"][utt], to_pcm16(wave))
        write_video_npy(tables["video.scp"][utt], mouths)
    write_data_dir(root / "test", tables)
    write_wav(root / "noise.wav", to_pcm16(rng.normal(0, 0.1, 2 * RATE)))
    (root / "noise.scp").write_text(f"noise1 {root / 'noise.wav'}\n")
    return root


def _build(test_dir, out_dir):
    from local.synthgrid.longform import build

    build(str(test_dir / "test"), str(test_dir / "noise.scp"), str(out_dir), seed=0, preset="ultrafast",
          speakers_per_recording=1, faceless_utts=1, babble_stretches=1)


@pytest.fixture(scope="module")
def long_set(test_dir, tmp_path_factory):
    _needs_mediapipe()
    out = tmp_path_factory.mktemp("test_long")
    _build(test_dir, out)
    return out


def _table(path):
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())


def test_truth_is_where_the_utterances_are(long_set, test_dir):
    segments = {u: v.split() for u, v in _table(long_set / "segments").items()}
    assert set(segments) == set(UTTS) and {v[0] for v in segments.values()} == {"long_s01"}
    sound = from_pcm16(decode_audio(_table(long_set / "recordings.scp")["long_s01"])[0])
    ends = []
    for utt, (lead, speech, _) in UTTS.items():
        start, end = float(segments[utt][1]), float(segments[utt][2])
        assert end - start == pytest.approx(speech / RATE, abs=1e-3)
        # The utterance starts on a frame, its speech `lead` samples later.
        clip_start = start - lead / RATE
        assert clip_start * 25 == pytest.approx(round(clip_start * 25), abs=0.03)
        at = round(clip_start * 25) * SAMPLES_PER_FRAME
        original = from_pcm16(read_wav(test_dir / f"{utt}.wav"))[lead : lead + speech]
        assert np.corrcoef(sound[at + lead : at + lead + speech], original)[0, 1] > 0.9
        # Silence before it (AAC smears an onset over up to a frame of 1024 samples).
        assert np.abs(sound[at + lead - 3000 : at + lead - 1100]).max() < 0.01
        ends.append((start, end))
    assert [s for s, _ in ends] == sorted(s for s, _ in ends)  # in id order
    (rec, start, end), = [v.split()[1:] for v in (long_set / "babble").read_text().splitlines()]
    babble = sound[int(float(start) * RATE) : int(float(end) * RATE)]
    assert 3.0 <= len(babble) / RATE <= 5.0 and np.sqrt(np.mean(babble**2)) > 0.01
    assert not any(s < float(end) and float(start) < e for s, e in ends)  # babble alone


def test_faceless_stretch_and_crops(long_set, test_dir):
    from espnet_mtsk.data.mouth_roi import crop_mouth_file, detect_landmarks
    from espnet_mtsk.data.video import read_video

    faces = _table(long_set / "utt2face")
    assert faces == {"s01_0001": "1", "s01_0002": "0", "s01_0003": "1"}  # neither first nor last
    frames, fps = read_video(_table(long_set / "recordings.scp")["long_s01"], pix_fmt="rgb24")
    segments = {u: v.split() for u, v in _table(long_set / "segments").items()}
    middles = {u: int((float(v[1]) + float(v[2])) / 2 * fps) for u, v in segments.items()}
    found = ~np.isnan(detect_landmarks(frames[list(middles.values())])).any(axis=(1, 2))
    assert dict(zip(middles, found.tolist())) == {u: f == "1" for u, f in faces.items()}
    clips = _table(long_set / "clips.scp")
    assert len(read_video(clips["s01_0002"])[0]) == len(np.load(test_dir / "s01_0002.npy"))
    # The mouth crop of a clip gives back the rendered mouth (about 3-4 gray levels off).
    crops = crop_mouth_file(clips["s01_0001"], 32)
    assert np.abs(crops.astype(float) - np.load(test_dir / "s01_0001.npy")).mean() < 8


def test_deterministic_for_a_seed(long_set, test_dir, tmp_path):
    from local.synthgrid.longform import Recording, load_utterances

    _build(test_dir, tmp_path)
    for name in ("segments", "babble", "utt2face", "text", "reco2dur"):
        assert (tmp_path / name).read_bytes() == (long_set / name).read_bytes()
    for rel in ("media/long_s01.mp4", "media/clips/s01_0002.mp4"):
        assert (tmp_path / rel).read_bytes() == (long_set / rel).read_bytes()
    utts = load_utterances(str(test_dir / "test"))
    layout = lambda seed: Recording("r", utts, rng_for(seed, "longform", "r"), [RATE], 1, 1).parts  # noqa: E731
    assert layout(0) == layout(0) and layout(0) != layout(1)


def test_media_variants_keep_the_talk_in_sync(long_set, tmp_path):
    """local.synthgrid.media_variants: the late sound keeps its time on the
    clock, the variable-rate picture keeps every other frame's time, the
    still picture is one frame throughout; the truth tables travel."""
    import av

    from espnet_mtsk.data.video import frames_on_clock
    from local.synthgrid.media_variants import build

    build(str(long_set), ["late_audio", "vfr", "still"], str(tmp_path), audio_delay=0.4, drop_every=25)
    original = _table(long_set / "recordings.scp")["long_s01"]
    sound = from_pcm16(decode_audio(original)[0])
    picture = frames_on_clock(original)
    files = {v: _table(tmp_path / v / "recordings.scp")["long_s01"] for v in ("late_audio", "vfr", "still")}
    for variant in files:
        assert (tmp_path / variant / "segments").read_bytes() == (long_set / "segments").read_bytes()

    def audio_lead(path):  # the sound's stream start after the picture's (s)
        with av.open(path) as container:
            starts = {s.type: float(s.start_time * s.time_base) for s in container.streams}
        return starts["audio"] - starts["video"]

    # The stream starts late (its header counts the encoder's 1024 priming
    # samples before 0.4 s); its samples sit where the original's do.
    assert audio_lead(original) == 0 and audio_lead(files["late_audio"]) > 0.3
    late = from_pcm16(decode_audio(files["late_audio"])[0])
    lead = int(0.5 * RATE)  # past the cut and the encoder's priming
    assert len(late) == pytest.approx(len(sound), abs=2048)
    assert np.corrcoef(late[lead:len(sound)], sound[lead:len(late)])[0, 1] > 0.99

    with av.open(files["vfr"]) as container:
        grid = [int(round(f.time * 25)) for f in container.decode(video=0)]
    assert grid == [j for j in range(len(picture)) if j % 25 != 24]
    shown = frames_on_clock(files["vfr"]).astype(float)
    assert len(shown) == len(picture)
    assert np.abs(shown[24] - shown[23]).mean() < np.abs(picture[24].astype(float) - picture[23]).mean() + 1

    still = frames_on_clock(files["still"]).astype(float)
    assert len(still) == len(picture) and np.abs(still - still[0]).mean(axis=(1, 2, 3)).max() < 2
    assert np.abs(still[0] - picture[0]).mean() > 8  # rotated and shifted
    assert np.corrcoef(from_pcm16(decode_audio(files["still"])[0])[: len(sound)], sound[: len(sound)])[0, 1] > 0.99


def _hand_made(tmp_path):
    """A set of 3 utterances (the last without face) and a babble stretch,
    and JSONs: the second segment starts 0.4 s early and drops its first word, one
    word is found in the babble; the third clip drops a word."""
    set_dir = tmp_path / "set"
    set_dir.mkdir()
    (set_dir / "segments").write_text("a1 recA 1.00 2.00\na2 recA 3.00 4.00\na3 recA 8.00 9.00\n")
    (set_dir / "text").write_text("".join(f"a{i} {t}\n" for i, t in enumerate(TEXTS.values(), 1)))
    (set_dir / "utt2face").write_text("a1 1\na2 1\na3 0\n")
    (set_dir / "babble").write_text("recA_babble1 recA 5.00 7.00\n")
    av, a = (["audio", "video"], "a4_v3"), (["audio"], "a4")
    segments = [(0.9, 2.1, "bin blue at f two now", av), (2.6, 4.1, "red by g nine soon", av),
                (5.5, 6.0, "bin", av), (7.9, 9.1, "set white in z one again", a)]
    for folder in ("long", "clips"):
        (tmp_path / folder).mkdir()
    rows = [dict(start=s, end=e, text=t, scale=m[1], modalities=m[0]) for s, e, t, m in segments]
    (tmp_path / "long" / "recA.json").write_text(json.dumps(
        dict(file="recA.mp4", duration=10.0, text=" ".join(r["text"] for r in rows), segments=rows)))
    clip_texts = dict(zip(("a1", "a2", "a3"), TEXTS.values()), a3="set white in z one")
    for utt, text in clip_texts.items():
        modalities, scale = a if utt == "a3" else av
        row = dict(start=0.0, end=2.0, text=text, scale=scale, modalities=modalities)
        clip = dict(file=f"{utt}.mp4", duration=2.0, text=text, segments=[row])
        (tmp_path / "clips" / f"{utt}.json").write_text(json.dumps(clip))
    return set_dir


def test_scores_of_hand_made_transcripts(tmp_path):
    set_dir = _hand_made(tmp_path)
    utts, babble = read_set(str(set_dir))
    summary, lines = score_scale("a4_v3", utts, babble, str(tmp_path / "long"), str(tmp_path / "clips"))
    assert summary["long_wer"] == pytest.approx(100 * 2 / 18)  # a deletion and the babble's insertion
    assert summary["kept_wer"] == pytest.approx(100 * 1 / 18)  # the babble's word left out
    assert summary["clips_wer"] == pytest.approx(100 * 1 / 18)
    assert summary["gap"] == pytest.approx(100 * 1 / 18)
    assert summary["segment_wer"] == pytest.approx(100 * 2 / 18)
    assert summary["hits"] == pytest.approx(100 * 2 / 3)  # a2 starts 0.4 s early: a miss
    assert summary["start_mae"] == pytest.approx((0.1 + 0.4 + 0.1) / 3)
    assert summary["end_mae"] == pytest.approx(0.1)
    assert (summary["alarms"], summary["alarm_words"]) == (1, 1)
    assert (summary["faceless"], summary["audio_only"]) == (1, 1)
    assert "|a2|recA|3.00|4.00|-0.40|+0.10|" in lines
    out = tmp_path / "RESULTS_longform.md"
    score_main(["--set_dir", str(set_dir), "--long_dir", str(tmp_path / "long"), "--clip_dir",
                str(tmp_path / "clips"), "--scales", "a4_v3", "--out", str(out)])
    assert "|a4_v3|3|11.1|5.6|5.6|+5.6|**no**|11.1|66.7|**no**|0.20|0.10|1 (1 words)|1/1|" in out.read_text()


def test_a_media_variant_is_scored_beside_the_original(tmp_path):
    set_dir = _hand_made(tmp_path)
    recording = json.loads((tmp_path / "long" / "recA.json").read_text())
    recording["segments"] = [r for r in recording["segments"] if r["text"] != "bin"]  # no babble alarm
    recording["text"] = " ".join(r["text"] for r in recording["segments"])
    (tmp_path / "still" / "a4").mkdir(parents=True)
    (tmp_path / "still" / "a4" / "recA.json").write_text(json.dumps(recording))
    (tmp_path / "long_a4").symlink_to(tmp_path / "long")
    out = tmp_path / "RESULTS_longform.md"
    score_main(["--set_dir", str(set_dir), "--long_dir", str(tmp_path / "long_{scale}"), "--clip_dir",
                str(tmp_path / "clips"), "--scales", "a4", "--variant", "still", str(tmp_path / "still" / "{scale}"),
                "--variant_scales", "a4", "--out", str(out)])
    assert "|still|a4|5.6|11.1|-5.6|0 (0 words)|" in out.read_text()


def test_a_missing_transcript_is_named(tmp_path):
    set_dir = _hand_made(tmp_path)
    (tmp_path / "clips" / "a2.json").unlink()
    utts, babble = read_set(str(set_dir))
    with pytest.raises(FileNotFoundError, match="a2.json"):
        score_scale("a4", utts, babble, str(tmp_path / "long"), str(tmp_path / "clips"))
