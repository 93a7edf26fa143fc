"""The ESPnet entry points end to end: collect stats, train, decode; how
the command-line tools report an error."""

import importlib.machinery
import logging
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import soundfile
import yaml

from conftest import SENTENCES, TINY_VIDEO
from espnet_mtsk.cli import run_logged
from espnet_mtsk.fileio import read_wav


def _run(module, *args):
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _datadir(root, names, rng):
    root.mkdir(parents=True)
    with open(root / "wav.scp", "w") as wav, open(root / "video.scp", "w") as vid, open(
        root / "text", "w"
    ) as txt:
        for i, sentence in enumerate(names):
            utt = f"utt{i:02d}"
            seconds = 0.6 + 0.04 * i
            soundfile.write(root / f"{utt}.wav", rng.standard_normal(int(seconds * 16000)) * 0.1, 16000)
            np.save(root / f"{utt}.npy", rng.integers(0, 255, (int(seconds * 25), 24, 24), dtype=np.uint8))
            wav.write(f"{utt} {root / utt}.wav\n")
            vid.write(f"{utt} {root / utt}.npy\n")
            txt.write(f"{utt} {sentence.upper()}\n")
    return root


def _data_args(flag, root, with_text=True):
    names = [("wav.scp", "speech", "sound"), ("video.scp", "video", "video")]
    if with_text:
        names.append(("text", "text", "text"))
    out = []
    for file, name, kind in names:
        out += [flag, f"{root / file},{name},{kind}"]
    return out


def test_help_lists_every_choice():
    text = _run("espnet_mtsk.bin.avsr_train", "--help").stdout
    for option in ("--audio_encoder", "--video_encoder", "--compressor", "--llm", "--lora", "--frontend"):
        assert option in text
    for choice in ("whisper", "conformer", "avhubert", "avgpool", "stack", "causal_lm", "{ms,ss,mss,None}"):
        assert choice in text


def test_train_then_decode(tmp_path, llm_dir, whisper_dir):
    rng = np.random.default_rng(0)
    train = _datadir(tmp_path / "train", SENTENCES[:4], rng)
    config = {
        "audio_encoder": "whisper",
        "audio_encoder_conf": {"model_dir": whisper_dir},
        "video_encoder": "avhubert",
        "video_encoder_conf": TINY_VIDEO,
        "compressor": "stack",
        "llm_conf": {"model_dir": llm_dir},
        "lora": "ss",
        "lora_conf": {"r": 4, "lora_alpha": 8},
        "model_conf": {"mode": "avsr", "audio_rates": [2, 4], "video_rates": [2], "projector_hidden_size": 32},
        "freeze_param": ["encoders"],
        "optim": "adamw",
        "optim_conf": {"lr": 0.01},
        "batch_type": "unsorted",
        "batch_size": 2,
        "max_epoch": 2,
        "num_workers": 0,
        "best_model_criterion": [["valid", "acc", "max"]],
        "keep_nbest_models": 1,
    }
    conf = tmp_path / "train.yaml"
    conf.write_text(yaml.safe_dump(config))
    stats = tmp_path / "stats"
    common = ["--config", conf, "--ngpu", 0, "--use_matplotlib", "false"]
    _run(
        "espnet_mtsk.bin.avsr_train", *common, "--collect_stats", "true",
        *_data_args("--train_data_path_and_name_and_type", train),
        *_data_args("--valid_data_path_and_name_and_type", train),
        "--train_shape_file", train / "wav.scp", "--valid_shape_file", train / "wav.scp",
        "--output_dir", stats,
    )
    exp = tmp_path / "exp"
    _run(
        "espnet_mtsk.bin.avsr_train", *common,
        *_data_args("--train_data_path_and_name_and_type", train),
        *_data_args("--valid_data_path_and_name_and_type", train),
        "--train_shape_file", stats / "train/speech_shape",
        "--valid_shape_file", stats / "valid/speech_shape",
        "--output_dir", exp,
    )
    trained = yaml.safe_load((exp / "config.yaml").read_text())
    assert trained["model_conf"]["mode"] == "avsr"
    for scale in ("a2_v2", "a4_v2"):
        out = tmp_path / f"decode_{scale}"
        _run(
            "espnet_mtsk.bin.avsr_inference", "--scale", scale,
            "--asr_train_config", exp / "config.yaml",
            "--asr_model_file", exp / "valid.acc.best.pth",
            *_data_args("--data_path_and_name_and_type", train, with_text=False),
            "--batch_size", 2, "--beam_size", 2, "--max_new_tokens", 8,
            "--output_dir", out,
        )
        hyps = (out / "1best_recog" / "text").read_text().splitlines()
        assert sorted(h.split()[0] for h in hyps) == [f"utt{i:02d}" for i in range(4)]
    # Several scales in one run share the encoder pass and give the same
    # transcripts as one run per scale.
    both = tmp_path / "decode_both"
    _run(
        "espnet_mtsk.bin.avsr_inference", "--scales", "a2_v2", "a4_v2",
        "--asr_train_config", exp / "config.yaml",
        "--asr_model_file", exp / "valid.acc.best.pth",
        *_data_args("--data_path_and_name_and_type", train, with_text=False),
        "--batch_size", 2, "--beam_size", 2, "--max_new_tokens", 8,
        "--output_dir", both,
    )
    for scale in ("a2_v2", "a4_v2"):
        for name in ("text", "num_tokens"):
            alone = (tmp_path / f"decode_{scale}" / "1best_recog" / name).read_text()
            assert (both / scale / "1best_recog" / name).read_text() == alone
    tokens = {
        scale: [int(line.split()[1]) for line in (both / scale / "1best_recog/num_tokens").read_text().splitlines()]
        for scale in ("a2_v2", "a4_v2")
    }
    assert all(a > b for a, b in zip(tokens["a2_v2"], tokens["a4_v2"]))


def module(name, source, **names):
    """A module called ``name`` (run_logged goes by it: espnet_mtsk.* and
    local.* are this project's) made of ``source``, which sees ``names``."""
    made = types.ModuleType(name)
    made.__dict__.update(names)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), made.__dict__)
    return made


# A library's raise statement and a lookup of its own.
LIBRARY = module("somelib", """
    def parse(text):
        raise ValueError(f"cannot parse {text!r}")

    def lookup(key):
        return {}[key]
""")
PROJECT = module("espnet_mtsk.checks", """
    def one_line(path):
        raise ValueError(f"{path}: bad header")

    def several_lines(path):
        raise FileNotFoundError(
            f"{path}: "
            "no such list"
        )

    def wrapped(path):
        try:
            somelib.parse(path)
        except ValueError as e:
            raise ValueError(f"{path}: not a number ({e})") from e

    def lookup(table, key):
        return table[key]

    def number(text):
        return int(text)

    def in_the_message(text):
        raise ValueError(f"{text}: {int(text)} is out of range")

    def library(text):
        return somelib.parse(text)

    def reraised(text):
        try:
            somelib.lookup(text)
        except KeyError as e:
            raise e
""", somelib=LIBRARY)
LOCAL = module("local.checks", """
    def one_line(utt):
        raise KeyError(f"utterance {utt} has no text")
""")
# A module that `python -m local.tool` runs: called __main__, its spec names it.
MAIN = module("__main__", """
    def check():
        raise ValueError("--rates a2: needs a video rate")
""", __spec__=importlib.machinery.ModuleSpec("local.tool", None))


@pytest.mark.parametrize("work, message", [
    (lambda: PROJECT.one_line("a.scp"), "a.scp: bad header"),
    (lambda: PROJECT.several_lines("a.scp"), "a.scp: no such list"),
    (lambda: PROJECT.wrapped("x"), "x: not a number (cannot parse 'x')"),
    (lambda: LOCAL.one_line("u1"), "'utterance u1 has no text'"),
    (MAIN.check, "--rates a2: needs a video rate"),
], ids=["raise", "multi-line raise", "raise from", "local", "python -m"])
def test_run_logged_reports_the_projects_input_checks_in_one_line(caplog, work, message):
    assert run_logged(work) == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.getMessage() == message and record.exc_info is None


def test_run_logged_reports_a_real_input_check_in_one_line(caplog, tmp_path):
    soundfile.write(tmp_path / "8k.wav", np.zeros(800, np.int16), 8000)
    assert run_logged(lambda: read_wav(str(tmp_path / "8k.wav"))) == 1
    [record] = caplog.records
    assert "8k.wav: expected 16 kHz mono" in record.getMessage() and record.exc_info is None


@pytest.mark.parametrize("work, error", [
    (lambda: PROJECT.lookup({}, "a"), KeyError),
    (lambda: PROJECT.number("x"), ValueError),
    (lambda: PROJECT.in_the_message("x"), ValueError),
    (lambda: PROJECT.library("x"), ValueError),
    (lambda: PROJECT.reraised("k"), KeyError),
    (lambda: {}["a"], KeyError),
], ids=["dict lookup", "int()", "error in a raise's message", "library raise", "library error re-raised",
        "not project code"])
def test_run_logged_shows_the_traceback_of_any_other_error(caplog, work, error):
    assert run_logged(work) == 1
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info[0] is error
