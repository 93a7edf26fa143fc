import pytest
import torch
import yaml

from conftest import TINY_VIDEO, build
from espnet_mtsk.model import ESPnetMTSKModel
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import load_checkpoint


def _yaml_config(tmp_path, llm_dir, whisper_dir, **model_conf):
    conf = {
        "audio_encoder": "whisper",
        "audio_encoder_conf": {"model_dir": whisper_dir},
        "video_encoder": "avhubert",
        "video_encoder_conf": TINY_VIDEO,
        "compressor": "stack",
        "llm_conf": {"model_dir": llm_dir},
        "lora": "ss",
        "lora_conf": {"r": 2, "lora_alpha": 4},
        "model_conf": {"mode": "avsr", "audio_rates": [4, 16], "video_rates": [2, 5],
                       "projector_hidden_size": 16, **model_conf},
    }
    path = tmp_path / "conf.yaml"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_build_model_from_yaml_through_the_task(tmp_path, llm_dir, whisper_dir):
    path = _yaml_config(tmp_path, llm_dir, whisper_dir)
    args = AVSRTask.get_parser().parse_args(["--config", str(path), "--output_dir", str(tmp_path)])
    model = AVSRTask.build_model(args)
    assert isinstance(model, ESPnetMTSKModel)
    assert model.scale_ids == ["a4_v2", "a4_v5", "a16_v2", "a16_v5"]
    assert sorted(model.projectors) == ["a16", "a4", "v2", "v5"]
    # stacking multiplies the feature size by the rate
    assert model.projectors["a16"].net[0].in_features == 32 * 16
    adapters = {n.split(".")[-2] for n, _ in model.llm.model.named_parameters() if ".lora_A." in n}
    assert adapters == set(model.scale_ids)


def test_yaml_lora_none_trains_the_whole_llm(tmp_path, llm_dir, whisper_dir):
    model = build(llm_dir, whisper_dir, mode="asr", lora="none")
    assert all(p.requires_grad for p in model.llm.model.parameters())
    assert not any(".lora_" in n for n, _ in model.named_parameters())


def test_checkpoint_round_trip_and_mismatch(tmp_path, llm_dir, whisper_dir):
    path = _yaml_config(tmp_path, llm_dir, whisper_dir)
    args = AVSRTask.get_parser().parse_args(["--config", str(path), "--output_dir", str(tmp_path)])
    model = AVSRTask.build_model(args)
    ckpt = tmp_path / "model.pth"
    torch.save(model.state_dict(), ckpt)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    loaded, _ = AVSRTask.build_model_from_file(config, ckpt)
    key = "projectors.a4.net.0.weight"
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])
    # The pretrained encoder file a config started from is not needed (nor
    # read) once a trained checkpoint holds every weight.
    gone = dict(vars(args), video_encoder_conf=dict(TINY_VIDEO, checkpoint=str(tmp_path / "gone.pt")))
    config.write_text(yaml.safe_dump(gone))
    loaded, _ = AVSRTask.build_model_from_file(config, ckpt)
    key = "encoders.video.encoder.layers.0.fc1.weight"
    assert torch.equal(loaded.state_dict()[key], model.state_dict()[key])
    with pytest.raises(FileNotFoundError, match="gone.pt"):
        AVSRTask.build_model_from_file(config, None)

    other = dict(vars(args), model_conf=dict(args.model_conf, audio_rates=[4], projector_hidden_size=8))
    config.write_text(yaml.safe_dump(other))
    with pytest.raises(ValueError, match=r"model\.pth does not fit(.|\n)*unexpected \(22\): .*lora_A\.a16_v2(.|\n)*shape mismatch \(9\): projectors\.a4"):
        AVSRTask.build_model_from_file(config, ckpt)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path, llm_dir, whisper_dir):
    model = build(llm_dir, whisper_dir, mode="asr", lora="ms")
    ckpt = tmp_path / "evil.pth"
    torch.save({"state": object()}, ckpt)
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(model, ckpt)
