"""A training records the fingerprints of the pretrained folders and files
it started from; resuming, decoding from its exp folder and packing refuse
folders whose weights changed since, unless told to accept them."""

import json
import os
import shutil

import pytest
import torch
import yaml
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.trainer import Trainer

from conftest import model_config
from espnet_mtsk.bin import pack
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import PRETRAINED_RECORD, freeze
from espnet_mtsk.tasks.trainer import AVSRTrainer

CHANGED = (
    r"audio_encoder_conf\.model_dir: .*/pretrained/whisper: "
    r"model\.safetensors: sha256 \w+\.\.\. differs from the training's \w+\.\.\."
)


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def started(tmp_path, llm_dir, whisper_dir, monkeypatch):
    """A required_grad_only training started in ``exp`` with copies of the
    stand-in folders: ESPnet's training loop is replaced by a record of its
    calls, so AVSRTrainer's own work is what runs. Returns a function that
    runs it again with extra command-line options, and the exp folder."""
    calls = []
    monkeypatch.setattr(Trainer, "run", classmethod(lambda cls, **kwargs: calls.append(kwargs)))
    llm = shutil.copytree(llm_dir, tmp_path / "pretrained/llm")
    whisper = shutil.copytree(whisper_dir, tmp_path / "pretrained/whisper")
    conf = {
        **model_config(str(llm), str(whisper), lora="ss"),
        "freeze_param": ["encoders"],
        "save_strategy": "required_grad_only",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    exp = tmp_path / "exp"
    exp.mkdir()

    def run(*options, distributed_option=None):
        args = AVSRTask.get_parser().parse_args(
            ["--config", str(tmp_path / "train.yaml"), "--output_dir", str(exp), "--resume", "true", *options]
        )
        (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
        model = AVSRTask.build_model(args)
        freeze(model, args.freeze_param)
        AVSRTrainer.run(
            model=model, optimizers=[], schedulers=[], train_iter_factory=None, valid_iter_factory=None,
            plot_attention_iter_factory=None, trainer_options=AVSRTrainer.build_options(args),
            distributed_option=distributed_option or DistributedOption(),
        )
        return model, calls

    return run, exp


def _spoil(path):
    """Other bytes of the same size, in a new file as a download would leave."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.with_suffix(".new").write_bytes(bytes(data))
    os.replace(path.with_suffix(".new"), path)


def test_fresh_training_records_its_sources_and_resume_checks_them(started, tmp_path):
    run, exp = started
    model, calls = run()
    record = json.loads((exp / PRETRAINED_RECORD).read_text())
    assert sorted(r["option"] for r in record) == ["audio_encoder_conf.model_dir", "llm_conf.model_dir"]
    whisper = next(r for r in record if r["option"] == "audio_encoder_conf.model_dir")
    assert whisper["original"] == str(tmp_path / "pretrained/whisper")
    weights = tmp_path / "pretrained/whisper/model.safetensors"
    assert whisper["weights"]["model.safetensors"]["size"] == weights.stat().st_size

    torch.save(model.state_dict(), exp / "checkpoint.pth")
    run()
    assert len(calls) == 2
    _spoil(weights)
    with pytest.raises(ValueError, match=CHANGED + r"(.|\n)*--accept_pretrained_changes true"):
        run()
    assert len(calls) == 2
    run("--accept_pretrained_changes", "true")
    assert len(calls) == 3
    # The record keeps what training started from.
    assert json.loads((exp / PRETRAINED_RECORD).read_text()) == record
    # Started afresh, it records the folders as they are now.
    run("--resume", "false")
    assert json.loads((exp / PRETRAINED_RECORD).read_text()) != record


def test_only_the_first_rank_writes_the_record(started):
    run, exp = started
    run(distributed_option=DistributedOption(distributed=True, dist_rank=1))
    assert not (exp / PRETRAINED_RECORD).exists()


def test_decoding_and_packing_from_exp_check_the_record(started, tmp_path, caplog):
    run, exp = started
    model, _ = run()
    torch.save(model.state_dict(), exp / "1epoch.pth")
    config = exp / "config.yaml"
    AVSRTask.build_model_from_file(config, exp / "1epoch.pth")
    good = shutil.copytree(tmp_path / "pretrained/whisper", tmp_path / "good_whisper")
    _spoil(tmp_path / "pretrained/whisper/model.safetensors")

    with pytest.raises(ValueError, match=rf"exp/{PRETRAINED_RECORD}(.|\n)*" + CHANGED):
        AVSRTask.build_model_from_file(config, exp / "1epoch.pth")
    AVSR2Text(str(config), str(exp / "1epoch.pth"), accept_pretrained_changes=True)
    assert "model.safetensors: sha256" in caplog.text and "Using them as they are now" in caplog.text
    # The weights are compared, not the place.
    AVSRTask.build_model_from_file(
        config, exp / "1epoch.pth", pretrained_dirs={"audio_encoder_conf.model_dir": str(good)}
    )
    # A checkpoint with Whisper's weights does not lean on its folder.
    whole = model.state_dict()
    whole.update({f"encoders.audio.{k}": v for k, v in model.encoders["audio"].state_dict().items()})
    torch.save(whole, exp / "whole.pth")
    AVSRTask.build_model_from_file(config, exp / "whole.pth")

    out = tmp_path / "model.zip"
    packing = [
        "--asr_train_config", str(config), "--asr_model_file", str(exp / "1epoch.pth"), "--outpath", str(out),
    ]
    with pytest.raises(ValueError, match=CHANGED):
        pack.main(packing)
    assert not out.exists()
    pack.main([*packing, "--accept_pretrained_changes", "true"])
    assert out.exists()

    (exp / PRETRAINED_RECORD).write_text("{")
    with pytest.raises(ValueError, match=f"exp/{PRETRAINED_RECORD} is not a record"):
        AVSRTask.build_model_from_file(config, exp / "1epoch.pth")


def test_the_encoders_alone_check_their_own_sources_only(started, tmp_path):
    run, exp = started
    model, _ = run()
    torch.save(model.state_dict(), exp / "1epoch.pth")
    config = exp / "config.yaml"
    good = shutil.copytree(tmp_path / "pretrained/whisper", tmp_path / "good_whisper")
    _spoil(tmp_path / "pretrained/whisper/model.safetensors")
    with pytest.raises(ValueError, match=rf"exp/{PRETRAINED_RECORD}(.|\n)*" + CHANGED):
        AVSRTask.build_encoders_from_file(config, exp / "1epoch.pth")
    AVSRTask.build_encoders_from_file(config, exp / "1epoch.pth", accept_pretrained_changes=True)
    whisper = {"audio_encoder_conf.model_dir": str(good)}
    # The LLM's folder changed as well: the whole model refuses it, the
    # encoders never read it.
    _spoil(tmp_path / "pretrained/llm/model.safetensors")
    with pytest.raises(ValueError, match=r"llm_conf\.model_dir: .*/pretrained/llm: model\.safetensors: sha256"):
        AVSRTask.build_model_from_file(config, exp / "1epoch.pth", pretrained_dirs=whisper)
    encoders, _ = AVSRTask.build_encoders_from_file(config, exp / "1epoch.pth", pretrained_dirs=whisper)
    ours = encoders.state_dict()
    # Whisper's weights from the good copy, as the training had them.
    assert all(torch.equal(ours[f"encoders.audio.{k}"], v) for k, v in model.encoders["audio"].state_dict().items())


def test_the_encoders_of_a_packed_model_need_no_llm_folder(started, tmp_path, monkeypatch, capsys):
    from espnet_model_zoo.downloader import ModelDownloader

    init = ModelDownloader.__init__
    monkeypatch.setattr(ModelDownloader, "__init__", lambda self, cachedir=None: init(self, tmp_path / "zoo"))
    run, exp = started
    model, _ = run()
    torch.save(model.state_dict(), exp / "1epoch.pth")
    out = tmp_path / "model.zip"
    pack.main([
        "--asr_train_config", str(exp / "config.yaml"), "--asr_model_file", str(exp / "1epoch.pth"),
        "--outpath", str(out), "--inline_max_mb", "0",
    ])
    capsys.readouterr()
    pack.main(["--unpack", str(out), "--outdir", str(tmp_path / "unpacked")])
    files = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    config, ckpt = files["asr_train_config"], files["asr_model_file"]
    # Another machine: the referenced folders are elsewhere, the LLM nowhere.
    os.rename(tmp_path / "pretrained/whisper", tmp_path / "whisper_here")
    shutil.rmtree(tmp_path / "pretrained/llm")
    with pytest.raises(FileNotFoundError, match=r"^audio_encoder_conf\.model_dir: the packed model needs"):
        AVSRTask.build_encoders_from_file(config, ckpt)
    whisper = {"audio_encoder_conf.model_dir": str(tmp_path / "whisper_here")}
    with pytest.raises(FileNotFoundError, match=r"^llm_conf\.model_dir: the packed model needs"):
        AVSRTask.build_model_from_file(config, ckpt, pretrained_dirs=whisper)
    encoders, _ = AVSRTask.build_encoders_from_file(config, ckpt, pretrained_dirs=whisper)
    ours = encoders.state_dict()
    assert all(torch.equal(ours[f"encoders.audio.{k}"], v) for k, v in model.encoders["audio"].state_dict().items())
