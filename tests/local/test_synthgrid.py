"""SynthGRID: espeak timings, rendering, mixing, and the generated corpus."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from espnet_mtsk.data.augment import mix_at_snr
from espnet_mtsk.fileio import from_pcm16, read_wav, to_pcm16
from local.synthgrid import grammar
from local.synthgrid.espeak import get_synthesizer
from local.synthgrid.noise import measure_snr
from local.synthgrid.prepare import main, prepare
from local.synthgrid.render import (
    TARGETS,
    VISEMES,
    draw_mouth,
    random_appearance,
    render_video,
    visemes_of,
)
from local.synthgrid.seeding import rng_for
from local.synthgrid.speakers import draw_pretrain_speakers, draw_speakers

TINY = dict(
    train_speakers=2,
    dev_speakers=1,
    test_speakers=1,
    noise_speakers=2,
    utts_per_speaker=3,
    test_utts_per_speaker=2,
    noisy_dev_utts=3,  # dev's 2 and one more
    noisy_train_utts=2,
    babble_files=1,
    test_babble_files=1,
    babble_seconds=3.0,
)
DATA_DIRS = ["train", "dev", "test_clean", "test_snr-5", "test_snr0", "test_snr5", "test_snr10"]
CONDITION_DIRS = ["dev_noisy", "train_noisy", "test_noisy", "test_mixed"]  # DATA_FILES and utt2condition
CONDITIONS = ["clean", "snr-5", "snr0", "snr5", "snr10"]
DATA_FILES = ["wav.scp", "video.scp", "text", "utt2spk", "spk2utt"]


def _build(root: Path, seed=0, nj=1, **sizes):
    groups = prepare(str(root / "db"), str(root / "data"), seed=seed, nj=nj, **{**TINY, **sizes})
    return root, groups


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("seed0_nj1"))


def _read_table(path: Path) -> dict:
    rows = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
    return {key: value for key, value in rows}


def _files(db: Path) -> dict:
    return {str(p.relative_to(db)): p.read_bytes() for p in sorted(db.rglob("*")) if p.is_file()}


def _data_texts(root: Path) -> dict:
    data = root / "data"
    return {
        str(p.relative_to(data)): p.read_text().replace(str(root / "db"), "DB")
        for p in sorted(data.rglob("*"))
        if p.is_file()
    }


def test_deterministic_for_a_seed_and_independent_of_nj(corpus, tmp_path):
    root, _ = corpus
    again, _ = _build(tmp_path / "seed0_nj2", nj=2)
    assert _files(root / "db") == _files(again / "db")
    assert _data_texts(root) == _data_texts(again)

    other, _ = _build(tmp_path / "seed1", seed=1, utts_per_speaker=1, test_utts_per_speaker=1)
    wav = "wav/clean/s01/s01_0001.wav"
    assert (root / "db" / wav).read_bytes() != (other / "db" / wav).read_bytes()
    assert _read_table(root / "data/train/text") != _read_table(other / "data/train/text")


def test_speakers_are_disjoint(corpus):
    _, groups = corpus
    for seed in range(3):
        groups_default = draw_speakers(seed, {"train": 12, "dev": 2, "test": 4, "noise": 12})
        for gs in (groups, groups_default):
            pairs = [(s.voice, s.variant) for members in gs.values() for s in members]
            assert len(pairs) == len(set(pairs))
    root, _ = corpus
    speakers = {d: set(_read_table(root / "data" / d / "utt2spk").values()) for d in ["train", "dev", "test_clean"]}
    assert not speakers["train"] & speakers["dev"] and not speakers["train"] & speakers["test_clean"]
    assert not speakers["dev"] & speakers["test_clean"]


def test_pretrain_talkers_have_voices_of_their_own_and_leave_the_task_data_alone(corpus, tmp_path):
    groups = draw_speakers(0, {"train": 40, "dev": 2, "test": 4, "noise": 12})
    taken = {(s.voice, s.variant) for members in groups.values() for s in members}
    talkers = draw_pretrain_speakers(0, 70, groups)
    pairs = [(s.voice, s.variant) for s in talkers]
    # 30 voices are free: each has a talker before any has a second.
    assert not set(pairs) & taken and len(set(pairs)) == 30 and len(set(pairs[:30])) == 30
    assert len({s.look for s in talkers}) == 70 and [s.spk_id for s in talkers[:2]] == ["p001", "p002"]
    assert draw_pretrain_speakers(0, 5, groups) == talkers[:5]
    with pytest.raises(ValueError, match="no voice is left"):
        draw_pretrain_speakers(0, 1, draw_speakers(0, {"train": 88}))

    root, _ = corpus
    with_pretrain, groups = _build(tmp_path / "pretrain", pretrain_speakers=3, pretrain_utts_per_speaker=2)
    texts = _data_texts(with_pretrain)
    assert {k: v for k, v in texts.items() if not k.startswith("pretrain/")} == _data_texts(root)
    utt2spk = _read_table(with_pretrain / "data" / "pretrain" / "utt2spk")
    assert sorted(set(utt2spk.values())) == ["p001", "p002", "p003"] and len(utt2spk) == 6
    wavs = set(_read_table(with_pretrain / "data" / "pretrain" / "wav.scp").values())
    for other in ("train", "dev", "test_clean"):
        assert not wavs & set(_read_table(with_pretrain / "data" / other / "wav.scp").values())
    assert [s.spk_id for s in groups["pretrain"]] == ["p001", "p002", "p003"]


def test_data_dirs_are_consistent_and_av_lengths_agree(corpus):
    root, _ = corpus
    data = root / "data"
    for name in DATA_DIRS + CONDITION_DIRS:
        tables = {f: (data / name / f).read_text().splitlines() for f in DATA_FILES}
        if name in CONDITION_DIRS:
            tables["utt2condition"] = (data / name / "utt2condition").read_text().splitlines()
        ids = [line.split()[0] for line in tables["wav.scp"]]
        assert ids == sorted(ids) and len(ids) == len(set(ids)) > 0
        for f in ["video.scp", "text", "utt2spk"] + (["utt2condition"] if name in CONDITION_DIRS else []):
            assert [line.split()[0] for line in tables[f]] == ids, (name, f)
        utt2spk = _read_table(data / name / "utt2spk")
        assert all(utt.startswith(spk + "_") for utt, spk in utt2spk.items())
        spk2utt = {line.split()[0]: line.split()[1:] for line in tables["spk2utt"]}
        assert sorted(u for us in spk2utt.values() for u in us) == ids
        for utt, text in _read_table(data / name / "text").items():
            words = text.split()
            assert len(words) == 6 and all(w in slot for w, slot in zip(words, grammar.SLOTS)), text
    test_clean = {f: (data / "test_clean" / f).read_text() for f in DATA_FILES if f != "wav.scp"}
    for name in DATA_DIRS[3:]:
        assert {f: (data / name / f).read_text() for f in test_clean} == test_clean
        assert (data / name / "wav.scp").read_text() != (data / "test_clean" / "wav.scp").read_text()
    for name in DATA_DIRS + CONDITION_DIRS:
        videos = _read_table(data / name / "video.scp")
        for utt, wav in _read_table(data / name / "wav.scp").items():
            n_samples = len(read_wav(wav))
            frames = np.load(videos[utt])
            assert frames.dtype == np.uint8 and frames.shape[1:] == (32, 32)
            assert abs(len(frames) / 25 - n_samples / 16000) <= 0.04, utt
    noise = _read_table(data / "noise" / "wav.scp")
    assert len(noise) == TINY["babble_files"]
    assert all(os.path.exists(p) and "noise/train" in p for p in noise.values())


def test_phoneme_events_increase_within_the_audio():
    synth = get_synthesizer()
    for voice, words in [
        ("en-us+m3", ("bin", "blue", "at", "a", "two", "now")),
        ("en-gb-scotland+f2", ("place", "white", "with", "q", "nine", "soon")),
    ]:
        wave, phonemes = synth.synthesize(grammar.espeak_text(words), voice, rate=180)
        starts = [t for _, t in phonemes]
        assert len(phonemes) >= 12
        assert starts[0] >= 0 and all(a < b for a, b in zip(starts, starts[1:]))
        assert starts[-1] <= len(wave) / 16000
    # The letter "a" is said as its name /eI/, not as the article /@/.
    _, phonemes = synth.synthesize(grammar.espeak_text(("set", "red", "by", "a", "one", "again")), "en-us")
    names = [p for p, _ in phonemes]
    assert names[names.index("aI") + 1] == "eI"  # "by" then "a"


def _centre_darkness(video):
    h, w = video.shape[1:]
    return 255 - video[:, h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].astype(float).mean()


def test_visemes_are_distinguishable_in_frames():
    look = random_appearance(np.random.default_rng(0))

    def video(phoneme, seed=0):
        return render_video([(phoneme, 0.0)], 10, look, np.random.default_rng(seed))

    assert _centre_darkness(video("a")) > _centre_darkness(video("m")) + 40  # open vowel vs closure
    assert visemes_of("p") == visemes_of("b") == visemes_of("m") == (VISEMES.index("bilabial"),)
    assert np.array_equal(video("p"), video("b")) and np.array_equal(video("b"), video("m"))
    # Other seeds change only the jitter and pixel noise.
    assert np.abs(video("m", seed=0).astype(float) - video("m", seed=1)).mean() < 6
    assert _centre_darkness(video("f")) < _centre_darkness(video("m")) - 5  # upper teeth show

    # Every class draws differently (noise-free, mean over the frame).
    frames = draw_mouth(TARGETS, look, 32, np.zeros((len(VISEMES), 2)))
    gaps = np.abs(frames[:, None] - frames[None]).mean(axis=(2, 3))
    assert gaps[~np.eye(len(VISEMES), dtype=bool)].min() > 0.5


def test_mixed_audio_snr_matches_request(corpus):
    root, _ = corpus
    data = root / "data"
    clean = {u: from_pcm16(read_wav(p)) for u, p in _read_table(data / "test_clean" / "wav.scp").items()}
    babble = from_pcm16(read_wav(str(next((root / "db" / "noise" / "test").glob("*.wav")))))
    speech = next(iter(clean.values()))
    for snr in (-5, 0, 5, 10):
        mixed = mix_at_snr(speech, babble, snr, np.random.default_rng(snr + 5))
        assert abs(measure_snr(speech, mixed) - snr) < 0.5
        for utt, wav in _read_table(data / f"test_snr{snr}" / "wav.scp").items():
            assert abs(measure_snr(clean[utt], from_pcm16(read_wav(wav))) - snr) < 0.5, (utt, snr)


@pytest.mark.parametrize(
    "name, source, per_speaker, beyond, left_out",
    [("dev_noisy", "dev", 3, True, False), ("train_noisy", "train", 2, False, True),
     ("test_noisy", "test_clean", 2, False, False)],
)
def test_noisy_sets_have_every_condition(corpus, name, source, per_speaker, beyond, left_out):
    """dev_noisy: dev's utterances and one more per dev speaker (``beyond``
    the source set); train_noisy: the first 2 of each training speaker (the
    third ``left_out``); test_noisy: the test set; each at every condition."""
    root, _ = corpus
    data, db = root / "data", root / "db"
    files = ["wav.scp", "video.scp", "text", "utt2spk"]
    whole = {f: _read_table(data / source / f) for f in files}
    noisy = {f: _read_table(data / name / f) for f in files + ["utt2condition"]}
    speakers = sorted(set(whole["utt2spk"].values()))
    utts = [f"{spk}_{i:04d}" for spk in speakers for i in range(1, per_speaker + 1)]
    assert noisy["utt2condition"] == {f"{u}-{c}": c for u in utts for c in CONDITIONS}
    third = [f"{s}_0003" for s in speakers]
    assert sorted(set(whole["wav.scp"]) - set(utts)) == (third if left_out else [])
    extra = sorted(set(utts) - set(whole["wav.scp"]))
    assert extra == (third if beyond else [])
    for utt in extra:  # not in dev, but of a dev speaker, in the same corpus
        assert noisy["utt2spk"][f"{utt}-clean"] in speakers
        assert Path(noisy["wav.scp"][f"{utt}-clean"]).exists() and Path(noisy["video.scp"][f"{utt}-clean"]).exists()
    for utt, clean_wav in ((u, w) for u, w in whole["wav.scp"].items() if u in utts):
        assert noisy["wav.scp"][f"{utt}-clean"] == clean_wav
        for condition in CONDITIONS:
            assert {f: noisy[f][f"{utt}-{condition}"] for f in files[1:]} == {f: whole[f][utt] for f in files[1:]}
        for condition in CONDITIONS[1:]:
            path = db / "wav" / condition / whole["utt2spk"][utt] / f"{utt}.wav"
            assert noisy["wav.scp"][f"{utt}-{condition}"] == str(path)
            assert path.read_bytes() != Path(clean_wav).read_bytes()


@pytest.mark.parametrize("name, pool, other", [("dev", "train", "test"), ("test_clean", "test", "train")])
def test_noisy_copies_mix_the_babble_of_their_pool(corpus, name, pool, other):
    """Dev with the training babble (the test babble stays unheard), test
    with the test babble, with the rng keys the test copies always had."""
    root, _ = corpus
    db = root / "db"
    babble = {p: from_pcm16(read_wav(str(next((db / "noise" / p).glob("*.wav"))))) for p in ["train", "test"]}
    utt2spk = _read_table(root / "data" / name / "utt2spk")
    for utt, wav in _read_table(root / "data" / name / "wav.scp").items():
        clean = from_pcm16(read_wav(wav))
        for snr in (-5, 10):
            pcm = read_wav(str(db / "wav" / f"snr{snr}" / utt2spk[utt] / f"{utt}.wav")).astype(int)
            like = {
                p: to_pcm16(mix_at_snr(clean, noise, snr, rng_for(0, "mix", utt))).astype(int)
                for p, noise in babble.items()
            }
            # Within one LSB: torch's sums may round otherwise.
            assert np.abs(pcm - like[pool]).max() <= 1, (utt, snr)
            assert np.abs(pcm - like[other]).max() > 100, (utt, snr)


def test_mixed_test_has_each_utterance_once_at_a_drawn_condition(corpus, tmp_path):
    root, _ = corpus
    data = root / "data"
    clean = {f: (data / "test_clean" / f).read_text() for f in DATA_FILES if f != "wav.scp"}
    assert {f: (data / "test_mixed" / f).read_text() for f in clean} == clean
    conditions = _read_table(data / "test_mixed" / "utt2condition")
    wavs = {c: _read_table(data / ("test_clean" if c == "clean" else f"test_{c}") / "wav.scp") for c in CONDITIONS}
    assert _read_table(data / "test_mixed" / "wav.scp") == {u: wavs[c][u] for u, c in conditions.items()}
    assert set(conditions.values()) <= set(CONDITIONS) and len(set(conditions.values())) > 1
    # Keyed by the utterance id alone: other nj (test above) and sizes draw the same.
    bigger, _ = _build(tmp_path / "more", nj=2, test_utts_per_speaker=4)
    more = _read_table(bigger / "data" / "test_mixed" / "utt2condition")
    assert len(more) == 4 and {u: more[u] for u in conditions} == conditions


def test_without_snrs_the_condition_dirs_are_clean(tmp_path):
    root, _ = _build(tmp_path, utts_per_speaker=1, test_utts_per_speaker=1, snrs=())
    data = root / "data"
    dev = _read_table(data / "dev" / "wav.scp")
    noisy_dev = _read_table(data / "dev_noisy" / "wav.scp")
    assert set(_read_table(data / "dev_noisy" / "utt2condition").values()) == {"clean"}
    assert {k: noisy_dev[k] for k in noisy_dev if k[:-len("-clean")] in dev} == {f"{u}-clean": w for u, w in dev.items()}
    assert _read_table(data / "test_mixed" / "wav.scp") == _read_table(data / "test_clean" / "wav.scp")
    assert set(_read_table(data / "test_mixed" / "utt2condition").values()) == {"clean"}
    with pytest.raises(ValueError, match="each pool"):
        _build(tmp_path / "no_babble", babble_files=0)


def test_rerun_skips_existing_files_and_leaves_no_temp_files(tmp_path):
    argv = ["--db_dir", str(tmp_path / "db"), "--data_dir", str(tmp_path / "data"), "--snrs", "0"]
    argv += [x for k, v in TINY.items() for x in (f"--{k}", str(v))]
    main(argv)
    db = tmp_path / "db"
    stamps = {p: p.stat().st_mtime_ns for p in db.rglob("*") if p.is_file()}
    contents = _files(db)
    main(argv)
    assert {p: p.stat().st_mtime_ns for p in db.rglob("*") if p.is_file() and p.name != "speakers.tsv"} == {
        p: t for p, t in stamps.items() if p.name != "speakers.tsv"
    }

    # An interrupted run: a file missing and a stale temp file left behind.
    (db / "video" / "s04" / "s04_0001.npy").unlink()
    (db / "wav" / "snr0" / "s04" / "s04_0002.wav").unlink()
    (db / "wav" / "clean" / "s01" / ".s01_0001.wav.abcd1234.wav").write_bytes(b"half")
    main(argv)
    assert _files(db) == contents
    assert not [p for p in tmp_path.rglob(".*")]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev",
        "dev_noisy",
        "noise",
        "test_clean",
        "test_mixed",
        "test_noisy",
        "test_snr0",
        "train",
        "train_noisy",
    ]
    with pytest.raises(ValueError, match="another --db_dir"):
        main(argv + ["--seed", "1"])
    with pytest.raises(ValueError, match="another --db_dir"):
        main(argv + ["--babble_files", "2"])  # the noisy dev copies would draw from another pool

    # A corpus from before the noisy dev copies did not record babble_files.
    record = db / "settings.json"
    recorded = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in recorded.items() if k != "babble_files"}))
    main(argv)
    assert json.loads(record.read_text()) == recorded and _files(db) == contents
