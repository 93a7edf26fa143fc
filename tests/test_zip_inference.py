"""A tiny ESPnet ASR-task model, trained and packed by ESPnet's own tools,
decoded from its zip by espnet_mtsk.bin.zip_inference."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
import yaml
from espnet2.tasks.asr import ASRTask

from espnet_mtsk.bin import zip_inference

WORDS = ["bin", "blue", "at", "a", "one", "now"]
UTTS = {f"u{i}": " ".join(WORDS[i:] + WORDS[:i]) for i in range(4)}
CONFIG = dict(
    frontend_conf=dict(n_fft=512, hop_length=128, n_mels=20),
    encoder="transformer",
    encoder_conf=dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=1, input_layer="conv2d"),
    decoder="transformer",
    decoder_conf=dict(attention_heads=2, linear_units=32, num_blocks=1),
    model_conf=dict(ctc_weight=0.3),
    freeze_param=["decoder.output_layer"],
    max_epoch=1,
    batch_type="sorted",
    batch_size=2,
    num_workers=0,
    num_att_plot=0,
)


def run(*cmd, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """(folder, zip): 1 s of noise per utterance in data/, and the model
    ESPnet trained on it for one epoch, packed by espnet2.bin.pack."""
    root = tmp_path_factory.mktemp("espnet_asr")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for uid in UTTS:
        soundfile.write(data / f"{uid}.wav", rng.uniform(-0.3, 0.3, 16000).astype(np.float32), 16000)
    (data / "wav.scp").write_text("".join(f"{u} {data / u}.wav\n" for u in UTTS))
    (data / "text").write_text("".join(f"{u} {t}\n" for u, t in UTTS.items()))
    (data / "shape").write_text("".join(f"{u} 16000\n" for u in UTTS))
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", *WORDS, "<sos/eos>"]) + "\n")
    (root / "train.yaml").write_text(yaml.safe_dump(CONFIG))
    triples = [f"{data}/wav.scp,speech,sound", f"{data}/text,text,text"]
    run("espnet2.bin.asr_train", "--config", "train.yaml", "--token_type", "word", "--token_list", "tokens.txt",
        "--ngpu", "0", "--use_preprocessor", "true", "--output_dir", "exp",
        *[f for t in triples for f in ("--train_data_path_and_name_and_type", t)],
        *[f for t in triples for f in ("--valid_data_path_and_name_and_type", t)],
        "--train_shape_file", f"{data}/shape", "--valid_shape_file", f"{data}/shape", cwd=root)
    run("espnet2.bin.pack", "asr", "--asr_train_config", "exp/config.yaml",
        "--asr_model_file", "exp/1epoch.pth", "--outpath", "exp/model.zip", cwd=root)
    return root, root / "exp" / "model.zip"


def decode(root, zip_path, out, *extra):
    return zip_inference.main(["--model_tag", str(zip_path), "--beam_size", "2", "--output_dir", str(out),
                               "--data_path_and_name_and_type", f"{root}/data/wav.scp,speech,sound", *extra])


def test_a_packed_model_decodes_with_what_the_scorer_reads(packed, tmp_path):
    root, zip_path = packed
    (tmp_path / "extra").write_text("".join(f"{u} 5.0\n" for u in UTTS))
    assert decode(root, zip_path, tmp_path / "out", "--extra_seconds", str(tmp_path / "extra")) == 0
    best = tmp_path / "out" / "1best_recog"
    read = lambda name: dict(line.split(maxsplit=1) for line in (best / name).read_text().splitlines())  # noqa: E731
    assert sorted(read("text")) == sorted(UTTS)
    # 126 fbank frames of 1 s (hop 128), subsampled 4x by conv2d: 30
    # encoder frames, what the decoder attends to.
    assert set(read("num_tokens").values()) == {"30"}
    assert set(read("speech_seconds").values()) == {"1.000"}
    assert all(5.0 < float(v) < 15.0 for v in read("decode_seconds").values())  # the features' time is added
    info = json.loads((tmp_path / "out" / "model.json").read_text())
    model, _ = ASRTask.build_model_from_file(root / "exp" / "config.yaml", root / "exp" / "1epoch.pth")
    frozen = sum(p.numel() for p in model.decoder.output_layer.parameters())
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["trainable_parameters"] == info["parameters"] - frozen > 0
    assert info["model"] == str(zip_path)


def test_features_need_their_duration(packed, tmp_path, caplog):
    root, zip_path = packed
    np.save(tmp_path / "u0.npy", np.zeros((30, 20), dtype=np.float32))
    (tmp_path / "feats.scp").write_text(f"u0 {tmp_path / 'u0.npy'}\n")
    rc = zip_inference.main(["--model_tag", str(zip_path), "--output_dir", str(tmp_path / "out"),
                             "--data_path_and_name_and_type", f"{tmp_path}/feats.scp,speech,npy"])
    assert rc == 1 and "u0: features (30, 20) need --speech_seconds" in caplog.text
    assert zip_inference.main(["--output_dir", str(tmp_path / "o"), "--data_path_and_name_and_type", "x,speech,sound"]) == 1


def test_trainable_parameters_are_those_freeze_param_leaves():
    model = torch.nn.Module()
    model.enc = torch.nn.Linear(2, 3)  # 9 parameters
    model.enc2 = torch.nn.Linear(3, 1)  # 4
    model.dec = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 2))  # 2 + 4
    counts = zip_inference.count_parameters
    assert counts(model, []) == {"parameters": 19, "trainable_parameters": 19}
    # A name freezes itself and what lies under "name.", not "name2".
    assert counts(model, ["enc"])["trainable_parameters"] == 10
    assert counts(model, ["dec.1", "enc2.bias"])["trainable_parameters"] == 14
