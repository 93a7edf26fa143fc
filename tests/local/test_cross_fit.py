"""Stage 9's cross-fitted video features (local/cross_fit.py): the speaker
folds, and training utterances encoded only by the encoder of their fold."""

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import SENTENCES, TINY_VIDEO
from espnet_mtsk.data.encoded import EncodedScpReader
from espnet_mtsk.tasks.avsr import AVSRTask
from local.cross_fit import FOLDS_FILE, REPORT_FILE, main, speaker_folds
from test_cli import _datadir

SPEAKERS = ["s1", "s2", "s3", "s4", "s5"]


def test_folds_are_balanced_and_fixed_by_the_seed():
    folds = speaker_folds(SPEAKERS * 3, 2, seed=0)
    assert sorted(folds) == SPEAKERS and sorted(folds.values()) == [0, 0, 0, 1, 1]
    assert speaker_folds(list(reversed(SPEAKERS)), 2, seed=0) == folds
    assert any(speaker_folds(SPEAKERS, 2, seed=s) != folds for s in range(1, 6))
    assert sorted(speaker_folds(SPEAKERS, 5, seed=3).values()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("folds, match", [(1, "2 folds or more"), (6, "5 speakers cannot fill 6 folds")])
def test_too_few_folds_or_speakers_is_an_error(folds, match):
    with pytest.raises(ValueError, match=match):
        speaker_folds(SPEAKERS, folds, seed=0)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, llm_dir):
    """A training set of 5 speakers (2 utterances each), a valid set, a
    tiny video encoder config, the fold split and a checkpoint per fold
    and for the full encoder (random weights, seeded)."""
    root = tmp_path_factory.mktemp("cross_fit")
    rng = np.random.default_rng(0)
    train = _datadir(root / "train", SENTENCES[:10], rng)
    (train / "utt2spk").write_text("".join(f"utt{i:02d} {SPEAKERS[i // 2]}\n" for i in range(10)))
    valid = _datadir(root / "dev", SENTENCES[10:13], rng)
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump({
        "video_encoder": "avhubert",
        "video_encoder_conf": TINY_VIDEO,
        "llm_conf": {"model_dir": llm_dir},
        "model_conf": {"mode": "vsr", "video_rates": [2], "projector_hidden_size": 16},
    }))
    folds = root / "folds"
    assert main(["split", "--data_dir", str(train), "--folds", "2", "--out_dir", str(folds)]) == 0
    task = AVSRTask.get_parser().parse_args(["--config", str(config)])
    for seed, path in enumerate([folds / "fold1" / "video.pth", folds / "fold2" / "video.pth", root / "full.pth"]):
        save_encoder(task, path, seed)
    return root, train, valid, config, folds


def save_encoder(task, path, seed):
    torch.manual_seed(seed)
    encoder = AVSRTask.build_encoders(task)["video_encoder"]
    torch.save({f"encoders.video.{k}": v for k, v in encoder.state_dict().items()}, path)


def test_each_fold_encoder_trains_without_its_fold(recipe):
    root, train, _, _, folds = recipe
    fold_of = json.loads((folds / FOLDS_FILE).read_text())["speaker_fold"]
    utt2spk = dict(line.split() for line in (train / "utt2spk").read_text().splitlines())
    for k in (1, 2):
        part = folds / f"fold{k}" / "train"
        kept = [line.split()[0] for line in (part / "text").read_text().splitlines()]
        assert kept == sorted(u for u, s in utt2spk.items() if fold_of[s] != k - 1)
        for name in ("video.scp", "wav.scp", "utt2spk"):
            assert [line.split()[0] for line in (part / name).read_text().splitlines()] == kept
        speakers = {line.split()[0] for line in (part / "spk2utt").read_text().splitlines()}
        assert speakers == {s for s, f in fold_of.items() if f != k - 1}


def dump_args(recipe, out, full=None):
    root, train, valid, config, folds = recipe
    return [
        "dump", "--config", str(config), "--llm_dir", "unused", "--folds_dir", str(folds),
        "--full", str(full or root / "full.pth"), "--train_dir", str(train), "--valid_dir", str(valid),
        "--out_dir", str(out),
    ]


def dump(recipe, out):
    train, valid = recipe[1:3]
    assert main(dump_args(recipe, out)) == 0
    readers = {name: EncodedScpReader(str(out / name / "video_encoded.scp")) for name in (train.name, valid.name)}
    return {name: {utt: reader[utt] for utt in reader} for name, reader in readers.items()}


def test_training_utterances_depend_only_on_their_own_folds_encoder(recipe, tmp_path):
    root, train, valid, config, folds = recipe
    first = dump(recipe, tmp_path / "a")
    again = dump(recipe, tmp_path / "b")
    assert all(np.array_equal(again["train"][u], a) for u, a in first["train"].items())
    fold_of = json.loads((folds / FOLDS_FILE).read_text())["speaker_fold"]
    utt2spk = dict(line.split() for line in (train / "utt2spk").read_text().splitlines())
    assert len(first["train"]) == 10 and len(first["dev"]) == 3
    assert all(a.shape[1] == TINY_VIDEO["d_model"] for a in first["train"].values())
    report = json.loads((tmp_path / "a" / "train" / REPORT_FILE).read_text())
    assert [f["utterances"] for f in report["per_fold"]] == [6, 4]

    # Fold 2's encoder changed: only fold 2's utterances change.
    task = AVSRTask.get_parser().parse_args(["--config", str(config)])
    kept = (folds / "fold2" / "video.pth").read_bytes()
    try:
        save_encoder(task, folds / "fold2" / "video.pth", 7)
        second = dump(recipe, tmp_path / "c")
    finally:
        (folds / "fold2" / "video.pth").write_bytes(kept)
    for utt, spk in utt2spk.items():
        same = np.array_equal(first["train"][utt], second["train"][utt])
        assert same == (fold_of[spk] == 0), utt
    for utt in first["dev"]:
        assert np.array_equal(first["dev"][utt], second["dev"][utt])


def test_a_checkpoint_of_another_encoder_is_an_error(recipe, tmp_path, caplog):
    torch.save({"encoders.video.nothing": torch.zeros(1)}, tmp_path / "bad.pth")
    assert main(dump_args(recipe, tmp_path / "out", full=tmp_path / "bad.pth")) == 1
    assert "bad.pth: does not fit the video encoder" in caplog.text
    assert not (tmp_path / "out" / "train" / "video_encoded.scp").exists()
