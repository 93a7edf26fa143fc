"""Checkpoints that hold what was trained (save_strategy required_grad_only):
what they leave out, and loading them back strictly, the frozen parts from
the pretrained sources the config names."""

import pytest
import torch
import yaml

from conftest import model_config
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import freeze, leave_out_of_state_dict, pretrained_keys, pretrained_sources
from espnet_mtsk.tasks.trainer import atomic_torch_save

LLM_BASE = "llm.model.base_model.model.model."


def _train(tmp_path, llm_dir, whisper_dir, **conf):
    """A mini SS-LoRA model as training leaves it (trained weights moved,
    frozen ones as built), its full state, the checkpoint that
    required_grad_only writes and the config.yaml beside it."""
    conf = {**model_config(llm_dir, whisper_dir, lora="ss"), "freeze_param": ["encoders"], **conf}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(conf))
    args = AVSRTask.get_parser().parse_args(["--config", str(tmp_path / "train.yaml")])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.manual_seed(0)
    model = AVSRTask.build_model(args)
    for entry in args.init_param:
        model.load_state_dict(torch.load(entry), strict=False)
    freeze(model, args.freeze_param)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad or ".lora_" in name:
                p.add_(torch.randn_like(p))
    full = {k: v.clone() for k, v in model.state_dict().items()}
    leave_out_of_state_dict(model, pretrained_keys(model, pretrained_sources(args)))
    torch.save(model.state_dict(), tmp_path / "1epoch.pth")
    return model, full, tmp_path / "1epoch.pth", tmp_path / "config.yaml"


def test_checkpoint_holds_what_trained_and_loads_back(tmp_path, llm_dir, whisper_dir):
    model, full, ckpt, config = _train(tmp_path, llm_dir, whisper_dir)
    saved = torch.load(ckpt)
    # Whisper and the LLM come from their folders; the AV-HuBERT encoder is
    # frozen but random (no checkpoint in the config), so it is saved.
    assert not any(k.startswith("encoders.audio.") for k in saved)
    assert all(k in saved for k in full if k.startswith("encoders.video."))
    assert not any(k.startswith(LLM_BASE) and ".lora_" not in k for k in saved)
    adapters = {k.split(".")[-2] for k in saved if ".lora_A." in k}
    assert adapters == set(model.scale_ids)  # inactive SS adapters too
    assert "llm.marker_embed.weight" in saved and "projectors.a2.net.0.weight" in saved
    saved_bytes = sum(v.nbytes for v in saved.values())
    assert saved_bytes < 0.5 * sum(v.nbytes for v in full.values())

    loaded, _ = AVSRTask.build_model_from_file(config, ckpt)
    state = loaded.state_dict()
    assert sorted(state) == sorted(full)
    different = [k for k in full if not torch.equal(state[k], full[k])]
    # Including the LLM's frozen rows for the added tokens, rebuilt from its table.
    assert different == []


def test_trained_keys_stay_strict(tmp_path, llm_dir, whisper_dir):
    _, _, ckpt, config = _train(tmp_path, llm_dir, whisper_dir)
    saved = torch.load(ckpt)
    lora = next(k for k in saved if ".lora_B." in k)
    for change, message in (
        (lambda s: s.pop(lora), rf"missing \(1\): {lora}"),
        (lambda s: s.__setitem__("projectors.a3.net.0.weight", torch.zeros(2)), r"unexpected \(1\): projectors\.a3"),
        (lambda s: s.__setitem__("projectors.a2.net.0.bias", torch.zeros(3)), r"shape mismatch \(1\): projectors\.a2\.net\.0\.bias"),
        (lambda s: s.pop("encoders.video.encoder.layer_norm.weight"), r"missing \(1\): encoders\.video\.encoder\.layer_norm\.weight"),
    ):
        state = dict(saved)
        change(state)
        torch.save(state, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=rf"bad\.pth does not fit(.|\n)*{message}"):
            AVSRTask.build_model_from_file(config, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no pretrained source video_encoder_conf.checkpoint"):
        AVSRTask.build_model_from_file(config, ckpt, pretrained_dirs={"video_encoder_conf.checkpoint": "x.pt"})


def test_init_param_encoders_come_back_from_their_files(tmp_path, llm_dir, whisper_dir):
    # As the SynthGRID recipe does: encoders pre-trained apart (stage 9) and
    # frozen, given to training as --init_param files.
    torch.manual_seed(3)
    encoder = AVSRTask.build_model(
        AVSRTask.get_parser().parse_args(["--config", _write(tmp_path, model_config(llm_dir, whisper_dir))])
    ).encoders["video"]
    video = tmp_path / "video.pth"
    torch.save({f"encoders.video.{k}": v for k, v in encoder.state_dict().items()}, video)
    model, full, ckpt, config = _train(tmp_path, llm_dir, whisper_dir, init_param=[str(video)])
    saved = torch.load(ckpt)
    assert not any(k.startswith(("encoders.video.", "encoders.audio.")) for k in saved)
    key = "encoders.video.encoder.layers.0.fc1.weight"
    assert torch.equal(full[key], encoder.state_dict()[key[len("encoders.video."):]])

    loaded, _ = AVSRTask.build_model_from_file(config, ckpt)
    assert all(torch.equal(loaded.state_dict()[k], full[k]) for k in full)
    # A checkpoint with every weight needs no init_param file; one without
    # them names the file it cannot read.
    torch.save(full, tmp_path / "full.pth")
    video.unlink()
    AVSRTask.build_model_from_file(config, tmp_path / "full.pth")
    with pytest.raises(FileNotFoundError, match="video.pth"):
        AVSRTask.build_model_from_file(config, ckpt)


def _write(tmp_path, conf):
    path = tmp_path / "encoder.yaml"
    path.write_text(yaml.safe_dump(conf))
    return str(path)


class _DiesWhilePickled:
    def __reduce__(self):
        raise RuntimeError("killed while saving")


def test_a_save_that_dies_leaves_the_previous_file(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 1, "w": torch.ones(1000)}, path)
    save = torch.save
    with atomic_torch_save(), pytest.raises(RuntimeError, match="killed"):
        torch.save({"epoch": 2, "w": torch.zeros(1000), "x": _DiesWhilePickled()}, path)
    assert torch.save is save
    assert torch.load(path)["epoch"] == 1
    # Without it, the same failure leaves a truncated file behind.
    with pytest.raises(RuntimeError, match="killed"):
        torch.save({"epoch": 2, "w": torch.zeros(1000), "x": _DiesWhilePickled()}, path)
    with pytest.raises(Exception):
        torch.load(path)
