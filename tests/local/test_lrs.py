"""LRS2/LRS3 preparation on tiny fake corpora: raw release and auto_avsr output."""

import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf

from espnet_mtsk.data.video import write_video_mp4
from espnet_mtsk.fileio import SAMPLES_PER_FRAME
from local.lrs.audio import clip_audio_pcm, make_noisy_copies
from local.lrs.crops import load_frames
from local.lrs.prepare import main, prepare
from local.lrs.transcripts import Word, frame_span, normalize_text, plan_pieces, read_lrs_txt


RATE = 16000
LIST_FILES = ["wav.scp", "video.scp", "text", "utt2spk", "spk2utt"]


def write_mp4(path: Path, seconds: float, freq: float = 440.0, size: int = 16) -> None:
    """A gray 25 fps video with a sine tone (AAC, 16 kHz mono)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tone = 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * RATE)) / RATE)
    frames = np.full((int(round(seconds * 25)), size, size), 128, np.uint8)
    write_video_mp4(str(path), frames, audio=tone, sample_rate=RATE)


def write_txt(path: Path, text: str, words=()) -> None:
    lines = [f"Text:  {text}", "Conf:  4", ""]
    if words:
        lines.append("WORD START END ASDSCORE")
        lines += [f"{w} {s:.2f} {e:.2f} 5.1" for w, s, e in words]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# Nine 2-s words: 18 s, cut into [0, 15.9] (8 words) and [16.1, 17.9] (1 word).
LONG_WORDS = [(f"W{i}", 2 * i + 0.1, 2 * i + 1.9) for i in range(9)]


def read_table(path: Path) -> Dict[str, str]:
    rows = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


def check_data_dir(folder: Path, lists=LIST_FILES) -> Dict[str, Dict[str, str]]:
    """Every list present, sorted, over the same utterances; spk2utt = utt2spk."""
    tables = {}
    for name in lists:
        lines = (folder / name).read_text().splitlines()
        keys = [line.split()[0] for line in lines]
        assert keys == sorted(keys), f"{folder / name} is not sorted"
        tables[name] = read_table(folder / name)
    utts = set(tables["text"])
    for name in ("wav.scp", "video.scp", "utt2spk"):
        if name in tables:
            assert set(tables[name]) == utts, name
    spk2utt = {s: u.split() for s, u in tables["spk2utt"].items()}
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(utts)
    for spk, us in spk2utt.items():
        for utt in us:
            assert tables["utt2spk"][utt] == spk
            assert utt.startswith(spk)
    for text in tables["text"].values():
        assert text == text.lower() and text.strip()
    return tables


# ------------------------------------------------------------- unit pieces


def test_read_txt_and_normalize(tmp_path):
    write_txt(tmp_path / "a.txt", "HELLO {LG} THERE IT'S", [("HELLO", 0.0, 0.5), ("THERE", 0.6, 1.0)])
    text, words = read_lrs_txt(str(tmp_path / "a.txt"))
    assert text == "HELLO {LG} THERE IT'S"
    assert words == [Word("HELLO", 0.0, 0.5), Word("THERE", 0.6, 1.0)]
    assert normalize_text(text) == "hello there it's"
    (tmp_path / "b.txt").write_text("Conf: 4\n")
    with pytest.raises(ValueError, match="Text:"):
        read_lrs_txt(str(tmp_path / "b.txt"))


def test_plan_pieces():
    words = [Word(*w) for w in LONG_WORDS]
    pieces = plan_pieces("X", words, 18.0, 16.0)
    assert [(p.start, p.end, p.text) for p in pieces] == [
        (0.0, 15.9, " ".join(f"W{i}" for i in range(8))),
        (16.1, 17.9, "W8"),
    ]
    assert all(p.end - p.start <= 16.0 for p in pieces)
    assert frame_span(pieces[0]) == (0, 398) and frame_span(pieces[1]) == (402, 448)
    assert plan_pieces("SHORT ONE", words, 15.0)[0].whole
    with pytest.raises(ValueError, match="no word timings"):
        plan_pieces("X", [], 20.0)
    # Many short words: every piece within the limit, no word lost.
    many = [Word(f"w{i}", 0.5 * i, 0.5 * i + 0.4) for i in range(100)]
    pieces = plan_pieces("", many, 50.0, 16.0)
    assert all(p.end - p.start <= 16.0 for p in pieces) and len(pieces) == 4
    assert " ".join(p.text for p in pieces).split() == [w.word for w in many]


# -------------------------------------------------------------- raw LRS3


@pytest.fixture(scope="module")
def raw_lrs3(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs3_raw")
    db = root / "LRS3"
    clips = {
        "pretrain/spkA/00001": (18.0, "W0 W1 W2 W3 W4 W5 W6 W7 W8", LONG_WORDS),
        "pretrain/spkA/00002": (1.2, "SHORT PRETRAIN", [("SHORT", 0.1, 0.5), ("PRETRAIN", 0.5, 1.1)]),
        "trainval/spkB/50001": (1.0, "HELLO {LG} WORLD", ()),
        "trainval/spkB/50002": (0.8, "SECOND ONE", ()),
        "trainval/spkC/50001": (0.8, "DEV UTTERANCE", ()),
        "test/spkD/00001": (0.6, "TEST ONE", ()),
        "test/spkE/00001": (0.6, "NO FACE HERE", ()),
    }
    for i, (key, (seconds, text, words)) in enumerate(sorted(clips.items())):
        write_mp4(db / f"{key}.mp4", seconds, freq=300 + 100 * i)
        write_txt(db / f"{key}.txt", text, words)
    (root / "lrs3-valid.id").write_text("trainval/spkC/50001\n")
    calls: List[tuple] = []

    def stub_cropper(scp, outdir, out_scp, nj, size):
        """Frame t of a crop holds the value t % 256; test/spkE fails."""
        calls.append((scp, nj, size))
        ok, failed = [], []
        for line in Path(scp).read_text().splitlines():
            clip_id, path = line.split()
            if clip_id == "test_spkE_00001":
                failed.append(f"{clip_id} no face detected")
                continue
            frames = len(load_frames(path))
            crop = (np.arange(frames) % 256).astype(np.uint8)[:, None, None]
            out = os.path.join(outdir, f"{clip_id}.npy")
            np.save(out, np.broadcast_to(crop, (frames, size, size)))
            ok.append(f"{clip_id} {out}")
        Path(out_scp).write_text("".join(f"{line}\n" for line in ok))
        Path(outdir, "failed.list").write_text("".join(f"{line}\n" for line in failed))

    data = root / "data"
    results = prepare(
        "lrs3", str(db), str(data), nj=2, crop_size=8, cropper=stub_cropper,
        valid_list=str(root / "lrs3-valid.id"),
    )  # fmt: skip
    return root, db, data, results, calls, stub_cropper


def test_raw_lrs3_sets(raw_lrs3):
    root, db, data, results, calls, _ = raw_lrs3
    tables = {name: check_data_dir(data / name) for name in ("train", "dev", "test")}
    assert tables["train"]["text"] == {
        "pretrain_spkA_00001_00": "w0 w1 w2 w3 w4 w5 w6 w7",
        "pretrain_spkA_00001_01": "w8",
        "pretrain_spkA_00002_00": "short pretrain",
        "trainval_spkB_50001": "hello world",
        "trainval_spkB_50002": "second one",
    }
    assert tables["dev"]["text"] == {"trainval_spkC_50001": "dev utterance"}
    assert tables["test"]["text"] == {"test_spkD_00001": "test one"}
    assert tables["train"]["utt2spk"]["pretrain_spkA_00001_01"] == "pretrain_spkA"
    assert len(calls) == 3 and {c[1:] for c in calls} == {(2, 8)}  # one per set


def test_raw_lrs3_failed_crop_dropped_and_reported(raw_lrs3, caplog):
    _, _, data, results, _, _ = raw_lrs3
    dropped = read_table(data / "test" / "dropped")
    assert list(dropped) == ["test_spkE_00001"]
    assert "no face detected" in dropped["test_spkE_00001"]
    assert "test_spkE_00001" in results["test"].dropped
    for name in LIST_FILES:
        assert "spkE" not in (data / "test" / name).read_text()
    assert (data / "train" / "dropped").read_text() == ""


def test_raw_lrs3_audio(raw_lrs3):
    _, db, data, _, _, _ = raw_lrs3
    wavs = read_table(data / "train" / "wav.scp")
    full = clip_audio_pcm(str(db / "pretrain/spkA/00001.mp4"))
    assert abs(len(full) - 18 * RATE) <= 2048  # AAC pads to whole 1024-sample frames
    for utt, (first, last) in {"pretrain_spkA_00001_00": (0, 398), "pretrain_spkA_00001_01": (402, 448)}.items():
        wave, rate = sf.read(wavs[utt], dtype="int16")
        info = sf.info(wavs[utt])
        assert rate == RATE and info.channels == 1 and wave.ndim == 1
        assert len(wave) == (last - first) * SAMPLES_PER_FRAME
        assert len(wave) / RATE <= 16.0
        np.testing.assert_array_equal(wave, full[first * SAMPLES_PER_FRAME : last * SAMPLES_PER_FRAME])
        assert np.abs(wave.astype(float)).max() > 3000  # the tone, not silence
    short, rate = sf.read(wavs["trainval_spkB_50001"], dtype="int16")
    assert abs(len(short) - RATE) <= 2048


def test_raw_lrs3_video(raw_lrs3):
    _, _, data, _, _, _ = raw_lrs3
    videos = read_table(data / "train" / "video.scp")
    piece = np.load(videos["pretrain_spkA_00001_01"])
    assert piece.shape == (46, 8, 8) and piece.dtype == np.uint8
    np.testing.assert_array_equal(piece[:, 0, 0], np.arange(402, 448) % 256)
    first = np.load(videos["pretrain_spkA_00001_00"])
    assert len(first) == 398 and first[0, 0, 0] == 0
    # The cut clip's full crop is gone; a whole clip's crop is used in place.
    assert not (data / "train" / "crops" / "pretrain_spkA_00001.npy").exists()
    assert videos["pretrain_spkA_00002_00"].endswith("crops/pretrain_spkA_00002.npy")
    assert len(np.load(videos["trainval_spkB_50001"])) == 25


def test_raw_lrs3_rerun_resumes(raw_lrs3):
    root, db, data, _, calls, stub = raw_lrs3
    before = {n: (data / "train" / n).read_text() for n in LIST_FILES}
    wav = Path(read_table(data / "train" / "wav.scp")["trainval_spkB_50002"])
    stamp = wav.stat().st_mtime_ns
    n_calls = len(calls)
    prepare("lrs3", str(db), str(data), sets=["train"], nj=1, crop_size=8, cropper=stub,
            valid_list=str(root / "lrs3-valid.id"))  # fmt: skip
    assert {n: (data / "train" / n).read_text() for n in LIST_FILES} == before
    assert wav.stat().st_mtime_ns == stamp
    assert len(calls) == n_calls  # every crop is there: the cropper is not run


def test_raw_dev_fallback_without_valid_list(raw_lrs3, tmp_path):
    _, db, _, _, _, _ = raw_lrs3
    results = prepare("lrs3", str(db), str(tmp_path / "data"), sets=["dev"], cropper=None, dev_size=1)
    assert [u.utt_id for u in results["dev"].utts] == ["trainval_spkC_50001"]
    assert not (tmp_path / "data" / "dev" / "video.scp").exists()


# --------------------------------------------------------- auto_avsr LRS3


@pytest.fixture(scope="module")
def auto_avsr_lrs3(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs3_auto_avsr")
    base = root / "lrs3"
    rows = {
        "train": [
            ("pretrain/spkA/00001_00", 1.2, "PIECE ONE", True),
            ("pretrain/spkA/00001_01", 0.8, "PIECE TWO", False),  # audio only inside the mp4
            ("trainval/spkB/50001", 1.0, "HELLO WORLD", True),
            ("trainval/spkC/50001", 0.8, "DEV UTTERANCE", True),
        ],
        "test": [("test/spkD/00001", 0.6, "test one", True)],
    }
    for i, (subset, items) in enumerate(rows.items()):
        lines = []
        for key, seconds, text, with_wav in items:
            mp4 = base / "lrs3_video_seg16s" / f"{key}.mp4"
            write_mp4(mp4, seconds, freq=350 + 50 * i)
            if with_wav:
                sf.write(mp4.with_suffix(".wav"), clip_audio_pcm(str(mp4)), RATE, subtype="PCM_16")
            txt = base / "lrs3_text_seg16s" / f"{key}.txt"
            txt.parent.mkdir(parents=True, exist_ok=True)
            txt.write_text(text)
            row = f"lrs3,lrs3_video_seg16s/{key}.mp4,{int(seconds * 25)},12 34 56"
            # The test labels in Llama-AVSR's form: the transcript as a fifth column.
            lines.append(row + (f",{text}" if subset == "test" else ""))
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"lrs3_{subset}_transcript_lengths_seg16s.csv").write_text(
            "\n".join(lines) + "\n"
        )
    (root / "valid.id").write_text("trainval/spkC/50001\n")
    data = root / "data"
    main(["--corpus", "lrs3", "--db_dir", str(root), "--data_dir", str(data), "--nj", "1",
          "--valid_list", str(root / "valid.id")])  # fmt: skip
    return root, data


def test_auto_avsr_lrs3(auto_avsr_lrs3):
    root, data = auto_avsr_lrs3
    tables = {name: check_data_dir(data / name) for name in ("train", "dev", "test")}
    assert tables["train"]["text"] == {
        "pretrain_spkA_00001_00": "piece one",
        "pretrain_spkA_00001_01": "piece two",
        "trainval_spkB_50001": "hello world",
    }
    assert tables["dev"]["text"] == {"trainval_spkC_50001": "dev utterance"}
    assert tables["test"]["text"] == {"test_spkD_00001": "test one"}
    crops = root / "lrs3" / "lrs3_video_seg16s"
    # Videos are the crops themselves; existing wavs are used in place.
    assert tables["train"]["video.scp"]["trainval_spkB_50001"] == str(crops / "trainval/spkB/50001.mp4")
    assert tables["train"]["wav.scp"]["trainval_spkB_50001"] == str(crops / "trainval/spkB/50001.wav")
    extracted = tables["train"]["wav.scp"]["pretrain_spkA_00001_01"]
    assert extracted == str(data / "train" / "wav" / "pretrain_spkA_00001_01.wav")
    wave, rate = sf.read(extracted, dtype="int16")
    assert rate == RATE and wave.ndim == 1 and abs(len(wave) - 0.8 * RATE) <= 2048


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither"):
        prepare("lrs3", str(tmp_path), str(tmp_path / "data"))


def test_noisy_test_copies(raw_lrs3, tmp_path):
    _, _, data, _, _, _ = raw_lrs3
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * RATE).astype(np.float32)
    sf.write(tmp_path / "babble.wav", noise, RATE, subtype="FLOAT")
    made = make_noisy_copies(str(data / "test"), str(tmp_path / "babble.wav"), [5, 10])
    assert made == [str(data / "test_snr5"), str(data / "test_snr10")]
    clean = read_table(data / "test" / "wav.scp")
    for snr, folder in zip((5, 10), made):
        tables = check_data_dir(Path(folder))
        for name in ("text", "video.scp", "utt2spk"):
            assert tables[name] == read_table(data / "test" / name)
        for utt, path in tables["wav.scp"].items():
            speech = sf.read(clean[utt], dtype="float32")[0]
            noisy = sf.read(path, dtype="float32")[0]
            assert len(noisy) == len(speech) and sf.info(path).samplerate == RATE
            measured = 10 * np.log10(np.sum(speech**2) / np.sum((noisy - speech) ** 2))
            assert abs(measured - snr) < 0.3
