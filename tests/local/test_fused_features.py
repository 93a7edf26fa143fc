import argparse

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from audio_dirs import LAYOUTS, tones, write_audio_dirs
from conftest import make_batch, model_config
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.from_file import ENCODER_PARTS
from espnet_mtsk.tasks.checkpoint import frozen_by, pretrained_keys, pretrained_sources
from local.fused_features import drops_video, fuse, fusion_scales, padded
from local.fused_features import main as fused_main

RATES = {"audio": 50.0, "video": 25.0}


def test_rate_pairs_must_meet_at_one_frame_rate():
    assert [s.id for s in fusion_scales(["a2_v1", "a12_v6"], RATES)] == ["a2_v1", "a12_v6"]
    with pytest.raises(ValueError, match=r"--rates a16_v6: audio at 3.12 Hz, video at 4.17 Hz"):
        fusion_scales(["a16_v6"], RATES)
    with pytest.raises(ValueError, match=r"--rates a4: needs an audio and a video rate"):
        fusion_scales(["a4"], RATES)


def test_fuse_pools_each_modality_and_concatenates_per_frame():
    audio = torch.arange(2 * 10 * 3, dtype=torch.float32).reshape(2, 10, 3)
    video = -torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    # The second utterance: 7 audio frames (4 after pooling by 2), 3 video
    # frames: cut to 3, the shorter.
    encoded = {"audio": (audio, torch.tensor([10, 7])), "video": (video, torch.tensor([5, 3]))}
    first, second = fuse(encoded, fusion_scales(["a2_v1"], RATES)[0])
    assert first.shape == (5, 5) and second.shape == (3, 5)
    np.testing.assert_allclose(first[0], [1.5, 2.5, 3.5, 0.0, -1.0])  # mean of audio frames 0-1, video frame 0
    np.testing.assert_allclose(second[2, :3], audio[1, 4:6].mean(0).numpy())
    np.testing.assert_allclose(second[:, 3:], video[1, :3].numpy())


def test_video_dropout_is_drawn_once_per_utterance():
    ids = [f"s{i:02d}_{j:04d}-noisy{k}" for i in range(10) for j in range(30) for k in range(3)]
    dropped = [uid for uid in ids if drops_video(uid, 0.3)]
    assert 0.25 < len(dropped) / len(ids) < 0.35
    assert dropped == [uid for uid in ids if drops_video(uid, 0.3)]  # the same draw on a re-run
    assert not any(drops_video(uid, 0.0) for uid in ids)


# A trained audio encoder behind ESPnet's front end and normalisation.
CONFORMER = dict(
    frontend="default",
    frontend_conf=dict(n_fft=512, hop_length=128, n_mels=20),
    normalize="utterance_mvn",
    audio_encoder="conformer",
    audio_encoder_conf=dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=1),
)


def _trained(root, llm_dir, whisper_dir, freeze, whole_init=False, **overrides):
    """A tiny AV model (``model_config`` with ``overrides``) as training
    leaves it: the video encoder pre-trained apart (an ``init_param``
    file, which with ``whole_init`` holds the model's projectors too, as
    a whole model's state would), the ``freeze`` parameters frozen, the
    others trained; -> its config.yaml and checkpoint (what trained)."""
    torch.manual_seed(1)
    video = AVSRTask.build_encoders(argparse.Namespace(**model_config(llm_dir, whisper_dir)))["video_encoder"]
    torch.save({f"encoders.video.{k}": v for k, v in video.state_dict().items()}, root / "video.pth")
    conf = model_config(llm_dir, whisper_dir, lora="ms")
    conf.update(freeze_param=freeze, init_param=[str(root / "video.pth")], **overrides)
    (root / "train.yaml").write_text(yaml.safe_dump(conf))
    args = AVSRTask.get_parser().parse_args(["--config", str(root / "train.yaml")])
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    model = AVSRTask.build_model(args)
    if whole_init:
        projectors = {k: v for k, v in model.state_dict().items() if k.startswith("projectors.")}
        torch.save({**torch.load(root / "video.pth"), **projectors}, root / "video.pth")
    model.load_state_dict(torch.load(root / "video.pth"), strict=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.requires_grad_(not frozen_by(name, freeze))
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    left_out = pretrained_keys(model, pretrained_sources(args))
    torch.save({k: v for k, v in model.state_dict().items() if k not in left_out}, root / "model.pth")
    return root / "config.yaml", root / "model.pth"


@pytest.mark.parametrize(
    "freeze, overrides",
    [
        (["encoders"], {}),
        (["encoders"], dict(whole_init=True)),
        (["encoders.audio"], {}),
        (["encoders.video"], CONFORMER),
    ],
    ids=["video_from_its_file", "video_from_a_file_with_more", "video_trained", "conformer_behind_a_frontend"],
)
def test_the_encoders_alone_compute_what_the_model_computes(tmp_path, llm_dir, whisper_dir, freeze, overrides):
    config, ckpt = _trained(tmp_path, llm_dir, whisper_dir, freeze, **overrides)
    model, _ = AVSRTask.build_model_from_file(config, ckpt)
    model.eval()
    encoders = AVSRTask.build_encoders_from_file(config, ckpt)[0].eval()
    ours = encoders.state_dict()
    assert sorted(ours) == sorted(k for k in model.state_dict() if k.split(".")[0] in ENCODER_PARTS)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in ours.items())
    batch, _ = make_batch(model.llm.tokenizer)
    with torch.no_grad():
        expected = model.encode(batch["speech"], batch["speech_lengths"], batch["video"], batch["video_lengths"])
        for modality, name in (("audio", "speech"), ("video", "video")):
            hs, hlens = encoders(modality, batch[name], batch[f"{name}_lengths"])
            assert torch.equal(hs, expected[modality][0]) and torch.equal(hlens, expected[modality][1])


def test_the_encoders_checkpoint_keys_stay_strict(tmp_path, llm_dir, whisper_dir):
    config, ckpt = _trained(tmp_path, llm_dir, whisper_dir, ["encoders.audio"])
    saved = torch.load(ckpt)
    for change, message in (
        (lambda s: s.pop("encoders.video.encoder.layer_norm.weight"),
         r"missing \(1\): encoders\.video\.encoder\.layer_norm\.weight"),
        (lambda s: s.__setitem__("encoders.video.extra", torch.zeros(2)), r"unexpected \(1\): encoders\.video\.extra"),
        (lambda s: s.__setitem__("encoders.video.encoder.layer_norm.bias", torch.zeros(3)),
         r"shape mismatch \(1\): encoders\.video\.encoder\.layer_norm\.bias"),
    ):
        state = dict(saved)
        change(state)
        torch.save(state, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=rf"bad\.pth does not fit(.|\n)*{message}"):
            AVSRTask.build_encoders_from_file(config, tmp_path / "bad.pth")
    # The keys of what the encoders do not hold are not theirs to judge.
    torch.save({**saved, "projectors.extra": torch.zeros(2)}, tmp_path / "more.pth")
    AVSRTask.build_encoders_from_file(config, tmp_path / "more.pth")
    with pytest.raises(ValueError, match=r"more\.pth does not fit(.|\n)*unexpected \(1\): projectors\.extra"):
        AVSRTask.build_model_from_file(config, tmp_path / "more.pth")


def test_a_mode_without_its_encoder_names_the_config(tmp_path, llm_dir, whisper_dir):
    config, ckpt = _trained(tmp_path, llm_dir, whisper_dir, ["encoders"])
    conf = yaml.safe_load(config.read_text())
    conf["video_encoder"] = None
    # Written by hand: the mode is the model's default (avsr).
    del conf["model_conf"]["mode"]
    config.write_text(yaml.safe_dump(conf))
    with pytest.raises(ValueError, match=rf"{config}: mode 'avsr' needs a video_encoder"):
        AVSRTask.build_encoders_from_file(config, ckpt)


def test_features_of_files_pipes_and_segments_without_the_llm_folder(tmp_path, llm_dir, whisper_dir):
    config, ckpt = _trained(tmp_path, llm_dir, whisper_dir, ["encoders"])
    waves = tones()
    rng = np.random.default_rng(0)
    for utt, wave in waves.items():
        np.save(tmp_path / f"{utt}.npy", rng.uniform(0, 255, (len(wave) // 640, 24, 24)).astype(np.float32))
    dirs = write_audio_dirs(tmp_path / "data", waves, {
        "video.scp": "".join(f"{utt} {tmp_path / utt}.npy\n" for utt in waves),
        "text": "".join(f"{utt} words\n" for utt in waves),
    })
    # What the whole model computes, in one batch as below.
    model, _ = AVSRTask.build_model_from_file(config, ckpt)
    model.eval()
    with torch.no_grad():
        videos = [np.load(tmp_path / f"{utt}.npy") for utt in waves]
        encoded = model.encode(*padded(list(waves.values())), *padded(videos))
    expected = dict(zip(waves, fuse(encoded, fusion_scales(["a2_v1"], RATES)[0])))
    # No LLM folder (its tokenizer included): building the model fails now.
    conf = yaml.safe_load(config.read_text())
    conf["llm_conf"]["model_dir"] = str(tmp_path / "no_llm")
    config.write_text(yaml.safe_dump(conf))
    with pytest.raises(FileNotFoundError, match="no_llm"):
        AVSRTask.build_model_from_file(config, ckpt)
    for layout in LAYOUTS:
        args = ["--asr_train_config", str(config), "--asr_model_file", str(ckpt), "--rates", "a2_v1"]
        args += ["--data_dir", str(dirs[layout]), "--out_dir", str(tmp_path / "fused"), "--name", layout]
        assert fused_main(args) == 0
        feats = dict(kaldiio.load_scp(str(tmp_path / "fused" / "a2_v1" / layout / "feats.scp")))
        assert sorted(feats) == sorted(waves)
        for utt in waves:
            assert np.array_equal(feats[utt], expected[utt]), (layout, utt)


def test_where_the_pretrained_parts_are_reaches_the_loader(tmp_path, monkeypatch):
    seen = {}

    def loader(config, model_file, **kwargs):
        seen.update(kwargs)
        raise ValueError("pretrained weights differ")

    monkeypatch.setattr(AVSRTask, "build_encoders_from_file", loader)
    args = ["--asr_train_config", "c.yaml", "--asr_model_file", "m.pth", "--rates", "a2_v1",
            "--data_dir", str(tmp_path), "--out_dir", str(tmp_path / "fused")]
    more = ["--pretrained_dir", "audio_encoder_conf.model_dir=/data/whisper", "--accept_pretrained_changes", "true"]
    assert fused_main(args + more) == 1
    assert seen == {"pretrained_dirs": {"audio_encoder_conf.model_dir": "/data/whisper"}, "accept_pretrained_changes": True}


def test_dumped_video_features_replace_the_video_encoder(tmp_path, llm_dir, whisper_dir, caplog):
    config, ckpt = _trained(tmp_path, llm_dir, whisper_dir, ["encoders"])
    waves = tones()
    rng = np.random.default_rng(1)
    dumped, lines = {}, []
    for utt, wave in waves.items():
        frames = len(wave) // 640
        np.save(tmp_path / f"{utt}.npy", rng.uniform(0, 255, (frames, 24, 24)).astype(np.float32))
        dumped[utt] = rng.standard_normal((frames, 32)).astype(np.float32)
        np.save(tmp_path / f"{utt}.video_encoded.npy", dumped[utt])
        lines.append(f"{utt} {tmp_path / utt}.video_encoded.npy\n")
    (tmp_path / "video_encoded.scp").write_text("".join(lines[1:]))
    dirs = write_audio_dirs(tmp_path / "data", waves, {
        "video.scp": "".join(f"{utt} {tmp_path / utt}.npy\n" for utt in waves),
        "text": "".join(f"{utt} words\n" for utt in waves),
    })
    args = ["--asr_train_config", str(config), "--asr_model_file", str(ckpt), "--rates", "a2_v1",
            "--data_dir", str(dirs[LAYOUTS[0]]), "--out_dir", str(tmp_path / "fused"),
            "--video_encoded_scp", str(tmp_path / "video_encoded.scp")]
    # An utterance the dump lacks is an error naming it.
    assert fused_main(args) == 1
    assert f"utterance '{next(iter(waves))}' has no dumped video encoder outputs" in caplog.text
    (tmp_path / "video_encoded.scp").write_text("".join(lines))
    assert fused_main(args) == 0
    feats = dict(kaldiio.load_scp(str(tmp_path / "fused" / "a2_v1" / LAYOUTS[0] / "feats.scp")))
    for utt, video in dumped.items():
        n = len(feats[utt])
        np.testing.assert_allclose(feats[utt][:, -32:], video[:n], rtol=1e-6)
