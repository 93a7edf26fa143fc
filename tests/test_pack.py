"""Packed models: small pretrained folders inside the zip, large ones
referenced with a fingerprint and found again (or refused) when unpacked."""

import os
import shutil
import zipfile

import pytest
import torch
import yaml

from espnet_mtsk.bin import pack
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from test_checkpoint import _train

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """espnet_model_zoo's unpacking and our sha256 digests go under tmp_path."""
    from espnet_model_zoo.downloader import ModelDownloader

    init = ModelDownloader.__init__
    monkeypatch.setattr(ModelDownloader, "__init__", lambda self, cachedir=None: init(self, tmp_path / "zoo"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _trained(tmp_path, llm_dir, whisper_dir, llm_at="pretrained/llm"):
    """A required_grad_only checkpoint whose config names copies of the
    stand-in folders (the tests move and spoil them)."""
    llm = shutil.copytree(llm_dir, tmp_path / llm_at)
    whisper = shutil.copytree(whisper_dir, tmp_path / "pretrained/whisper")
    (tmp_path / "exp").mkdir()
    _, full, ckpt, config = _train(tmp_path / "exp", str(llm), str(whisper))
    return full, ckpt, config


def _pack(tmp_path, ckpt, config, *options):
    out = tmp_path / "model.zip"
    pack.main(["--asr_train_config", str(config), "--asr_model_file", str(ckpt), "--outpath", str(out), *options])
    return out


def _same(avsr, full):
    state = avsr.model.state_dict()
    return sorted(state) == sorted(full) and all(torch.equal(state[k], full[k]) for k in full)


def test_small_folders_travel_inside(tmp_path, llm_dir, whisper_dir, capsys):
    full, ckpt, config = _trained(tmp_path, llm_dir, whisper_dir)
    out = _pack(tmp_path, ckpt, config)
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("pretrained/llm/model.safetensors") for n in names)
    assert any(n.endswith("pretrained/whisper/model.safetensors") for n in names)
    os.rename(tmp_path / "pretrained", tmp_path / "elsewhere")
    capsys.readouterr()
    # Stage 15's way: unpack, then decode from the files it names.
    pack.main(["--unpack", str(out), "--outdir", str(tmp_path / "unpacked")])
    files = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    assert _same(AVSR2Text(files["asr_train_config"], files["asr_model_file"]), full)


def test_large_folders_are_referenced_and_checked(tmp_path, llm_dir, whisper_dir):
    full, ckpt, config = _trained(tmp_path, llm_dir, whisper_dir)
    out = _pack(tmp_path, ckpt, config, "--inline_max_mb", "0", "--origin", "llm_conf.model_dir=org/llama")
    archive = zipfile.ZipFile(out)
    assert not any("pretrained/" in n for n in archive.namelist())
    packed = yaml.safe_load(archive.read(next(n for n in archive.namelist() if n.endswith("packed_config.yaml"))))
    refs = {r["option"]: r for r in packed["pretrained_references"]}
    weights = refs["llm_conf.model_dir"]["weights"]
    assert list(weights) == ["model.safetensors"] and len(weights["model.safetensors"]["sha256"]) == 64
    assert refs["llm_conf.model_dir"]["origin"] == "org/llama"
    # The zip holds the trained part only: far less than the folders.
    assert out.stat().st_size < 0.5 * sum(f.stat().st_size for f in (tmp_path / "pretrained").rglob("*"))

    assert _same(AVSR2Text.from_pretrained(str(out)), full)

    # Another machine: the folders are elsewhere.
    moved = tmp_path / "elsewhere"
    os.rename(tmp_path / "pretrained", moved)
    with pytest.raises(FileNotFoundError) as error:
        AVSR2Text.from_pretrained(str(out))
    message = str(error.value)
    assert message.startswith(f"llm_conf.model_dir: the packed model needs the pretrained folder {tmp_path}/pretrained/llm")
    assert f"{tmp_path}/pretrained/llm: not found" in message
    assert "huggingface-cli download org/llama" in message and "--pretrained_dir llm_conf.model_dir=PATH" in message
    dirs = {"llm_conf.model_dir": str(moved / "llm"), "audio_encoder_conf.model_dir": str(moved / "whisper")}
    assert _same(AVSR2Text.from_pretrained(str(out), pretrained_dirs=dirs), full)

    # Same size, other weights: refused, naming the folder and the file.
    weights_file = moved / "whisper" / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 1
    weights_file.write_bytes(bytes(data))
    with pytest.raises(FileNotFoundError, match=r"audio_encoder_conf\.model_dir: (.|\n)*whisper: model\.safetensors: sha256 \w+\.\.\. differs(.|\n)*Copy .*/pretrained/whisper from the machine that packed"):
        AVSR2Text.from_pretrained(str(out), pretrained_dirs=dirs)


def test_hub_cache_copy_is_found(tmp_path, llm_dir, whisper_dir, monkeypatch):
    from huggingface_hub import constants

    snapshot = f"hub/models--org--llama/snapshots/{REVISION}"
    full, ckpt, config = _trained(tmp_path, llm_dir, whisper_dir, llm_at=snapshot)
    out = _pack(tmp_path, ckpt, config, "--inline_max_mb", "0")
    # On another machine the hub cache is somewhere else.
    os.rename(tmp_path / "hub", tmp_path / "other_hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "other_hub"))
    assert _same(AVSR2Text.from_pretrained(str(out)), full)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub"))
    with pytest.raises(FileNotFoundError, match=f"huggingface-cli download org/llama --revision {REVISION}"):
        AVSR2Text.from_pretrained(str(out))
