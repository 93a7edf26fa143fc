"""Loading official fairseq AV-HuBERT checkpoints, on a tiny file written here.

The file follows the released layout (av_hubert's hubert.py, resnet.py,
hubert_asr.py and misc/fix_state.py): fairseq key names spelled out below,
not taken from our encoder, pos_conv saved with weight norm (dim=2), the audio
branch and pre-training heads present, and a fairseq Dictionary pickled in
task_state.
"""

import re
import sys
import types

import pytest
import torch

from espnet_mtsk.encoders.avhubert import AVHubertVideoEncoder
from espnet_mtsk.encoders.avhubert_checkpoint import (
    AVHubertCheckpointError,
    encoder_kwargs_from_checkpoint,
    load_avhubert_checkpoint,
)

D, FFN, LAYERS, HEADS, K, GROUPS = 32, 64, 2, 4, 4, 2
STEM, WIDTHS = 8, [8, 16, 32, 64]
TINY = dict(
    stem_channels=STEM,
    resnet_channels=WIDTHS,
    d_model=D,
    num_heads=HEADS,
    ffn_dim=FFN,
    num_layers=LAYERS,
    pos_conv_kernel=K,
    pos_conv_groups=GROUPS,
    modality_fuse="concat",
)
MODEL_CFG = {
    "_name": "av_hubert",
    "encoder_layers": LAYERS,
    "encoder_embed_dim": D,
    "encoder_ffn_embed_dim": FFN,
    "encoder_attention_heads": HEADS,
    "conv_pos": K,
    "conv_pos_groups": GROUPS,
    "layer_norm_first": True,
    "modality_fuse": "concat",
    "sub_encoder_layers": 0,
    "audio_feat_dim": 104,
    "final_dim": 16,
}


def fairseq_state_dict():
    """AVHubertModel.state_dict() names and shapes, with random values."""
    g = torch.Generator().manual_seed(0)
    shapes = {}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    res = "feature_extractor_video.resnet."
    shapes[res + "frontend3D.0.weight"] = (STEM, 1, 5, 7, 7)
    bn(res + "frontend3D.1", STEM)
    shapes[res + "frontend3D.2.weight"] = (STEM,)
    inplanes = STEM
    for i, width in enumerate(WIDTHS, 1):
        for j in (0, 1):
            b = f"{res}trunk.layer{i}.{j}."
            cin = inplanes if j == 0 else width
            shapes[b + "conv1.weight"] = (width, cin, 3, 3)
            bn(b + "bn1", width)
            shapes[b + "relu1.weight"] = (width,)
            shapes[b + "conv2.weight"] = (width, width, 3, 3)
            bn(b + "bn2", width)
            shapes[b + "relu2.weight"] = (width,)
            if j == 0 and i > 1:
                shapes[b + "downsample.0.weight"] = (width, cin, 1, 1)
                bn(b + "downsample.1", width)
        inplanes = width
    for name, n_in in (("feature_extractor_video", WIDTHS[-1]), ("feature_extractor_audio", 104)):
        shapes[f"{name}.proj.weight"], shapes[f"{name}.proj.bias"] = (D, n_in), (D,)
    shapes["mask_emb"] = (104,)
    shapes["layer_norm.weight"] = shapes["layer_norm.bias"] = (2 * D,)
    shapes["post_extract_proj.weight"], shapes["post_extract_proj.bias"] = (D, 2 * D), (D,)
    shapes["encoder.pos_conv.0.bias"] = (D,)
    shapes["encoder.pos_conv.0.weight_g"] = (1, 1, K)
    shapes["encoder.pos_conv.0.weight_v"] = (D, D // GROUPS, K)
    for n in range(LAYERS):
        b = f"encoder.layers.{n}."
        for p in ("q", "k", "v", "out"):
            proj = f"{b}self_attn.{p}_proj"
            shapes[proj + ".weight"], shapes[proj + ".bias"] = (D, D), (D,)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[f"{b}{ln}.weight"] = shapes[f"{b}{ln}.bias"] = (D,)
        shapes[b + "fc1.weight"], shapes[b + "fc1.bias"] = (FFN, D), (FFN,)
        shapes[b + "fc2.weight"], shapes[b + "fc2.bias"] = (D, FFN), (D,)
    shapes["encoder.layer_norm.weight"] = shapes["encoder.layer_norm.bias"] = (D,)
    shapes["final_proj.weight"], shapes["final_proj.bias"] = (16, D), (16,)
    shapes["label_embs_concat"] = (10, 16)

    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.2
    return state


class Dictionary:
    """Stands for fairseq.data.dictionary.Dictionary while the file is saved."""

    def __init__(self):
        self.symbols, self.indices = ["<s>", "1", "2"], {"<s>": 0, "1": 1, "2": 2}


class Payload:
    """Any other class pickled into a checkpoint."""


def save(path, model, cfg=None, task_state_class=Dictionary, module="fairseq.data.dictionary"):
    """torch.save as fairseq does, with a class that is not importable at load time."""
    mod = types.ModuleType(module)
    setattr(mod, task_state_class.__name__, task_state_class)
    own_module, task_state_class.__module__ = task_state_class.__module__, module
    parts = module.split(".")
    added = [".".join(parts[: i + 1]) for i in range(len(parts))]
    added = [name for name in added if name not in sys.modules]
    for name in added:
        sys.modules[name] = mod if name == module else types.ModuleType(name)
    try:
        torch.save(
            {
                "args": None,
                "cfg": cfg or {"model": MODEL_CFG, "task": {"labels": ["km"]}},
                "model": model,
                "optimizer_history": [{"num_updates": 3}],
                "task_state": {"dictionaries": [task_state_class()]},
                "extra_state": {"metrics": {}},
            },
            path,
        )
    finally:
        for name in added:
            del sys.modules[name]
        task_state_class.__module__ = own_module
    return str(path)


def fairseq_pos_conv_weight(g, v):
    """What fairseq's weight_norm(Conv1d, dim=2) computes, via torch's own API."""
    conv = torch.nn.Conv1d(D, D, K, groups=GROUPS)
    conv = torch.nn.utils.parametrizations.weight_norm(conv, dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.copy_(g)
        conv.parametrizations.weight.original1.copy_(v)
    return conv.weight.detach()


def test_official_layout_loads_every_video_weight(tmp_path):
    source = fairseq_state_dict()
    path = save(tmp_path / "large_vox_iter5.pt", source)
    assert encoder_kwargs_from_checkpoint(path) == TINY

    enc = AVHubertVideoEncoder(**TINY, checkpoint=path).eval()  # as from YAML
    ours = enc.state_dict()
    same_name = [k for k in source if k in ours]
    assert len(same_name) == len(ours) - 2  # all but pos_conv's weight and bias
    for key in same_name:
        assert torch.equal(ours[key], source[key]), key
    pos = "encoder.pos_conv.0."
    folded = fairseq_pos_conv_weight(source[pos + "weight_g"], source[pos + "weight_v"])
    assert torch.allclose(ours["encoder.pos_conv.weight"], folded, atol=1e-6)
    assert torch.equal(ours["encoder.pos_conv.bias"], source[pos + "bias"])

    # The front end is AV-HuBERT's video-only extract_finetune: proj, an
    # all-zero audio half, LayerNorm over both halves, post_extract_proj.
    seen = {}
    enc.encoder.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    video, lens = torch.rand(2, 5, 24, 24) * 255, torch.tensor([5, 5])
    with torch.no_grad():
        hs, _, _ = enc(video, lens)
        again, _, _ = AVHubertVideoEncoder(**TINY, checkpoint=path).eval()(video, lens)
        resnet = enc.feature_extractor_video.resnet(((video / 255 - 0.421) / 0.165).unsqueeze(1))
        linear = lambda x, name: x @ source[name + ".weight"].T + source[name + ".bias"]  # noqa: E731
        v = linear(resnet, "feature_extractor_video.proj")
        fused = torch.nn.functional.layer_norm(
            torch.cat([torch.zeros_like(v), v], -1),
            (2 * D,),
            source["layer_norm.weight"],
            source["layer_norm.bias"],
        )
        expected = linear(fused, "post_extract_proj")
    assert torch.allclose(seen["x"], expected, atol=1e-5)
    assert torch.equal(hs, again)  # every weight comes from the file


def test_loading_into_a_default_encoder_says_to_use_the_kwargs(tmp_path):
    path = save(tmp_path / "ckpt.pt", fairseq_state_dict())
    enc = AVHubertVideoEncoder(**{**TINY, "modality_fuse": None})
    with pytest.raises(AVHubertCheckpointError, match="feature_extractor_video.proj.weight") as err:
        load_avhubert_checkpoint(path, enc)
    assert "encoder_kwargs_from_checkpoint" in str(err.value)


def _unknown(state):
    state["encoder.layers.0.self_attn.in_proj_weight"] = torch.zeros(3 * D, D)
    return "unknown keys (1): encoder.layers.0.self_attn.in_proj_weight"


def _missing(state):
    del state["encoder.layers.1.fc2.bias"]
    return "missing keys (1): encoder.layers.1.fc2.bias"


def _wrong_shape(state):
    state["encoder.layers.0.fc1.weight"] = torch.zeros(FFN + 1, D)
    return "shape mismatches (1): encoder.layers.0.fc1.weight (65, 32) vs encoder (64, 32)"


@pytest.mark.parametrize("spoil", [_unknown, _missing, _wrong_shape])
def test_bad_file_names_the_file_and_the_keys(tmp_path, spoil):
    state = fairseq_state_dict()
    expected = spoil(state)
    path = save(tmp_path / "spoiled.pt", state)
    enc = AVHubertVideoEncoder(**TINY)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    with pytest.raises(AVHubertCheckpointError) as err:
        load_avhubert_checkpoint(path, enc)
    message = str(err.value)
    assert path in message and expected in message
    assert message.count("(1):") == 1  # nothing else reported
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # untouched


@pytest.mark.parametrize(
    "prefix, head, dtype",
    [
        ("encoder.w2v_model.", "decoder.embed_tokens.weight", torch.float16),  # seq2seq, fp16
        ("w2v_encoder.w2v_model.", "w2v_encoder.proj.weight", torch.float32),  # CTC
    ],
)
def test_finetuned_prefix_loads(tmp_path, prefix, head, dtype):
    source = fairseq_state_dict()
    del source["final_proj.weight"], source["final_proj.bias"]  # remove_pretraining_modules
    source = {k: v.to(dtype) if v.is_floating_point() else v for k, v in source.items()}
    model = {prefix + k: v for k, v in source.items()}
    model[head] = torch.randn(5, D)
    cfg = {"model": {"_name": "av_hubert_seq2seq", "w2v_args": {"model": MODEL_CFG}}, "task": {}}
    path = save(tmp_path / "large_vox_433h.pt", model, cfg)
    assert encoder_kwargs_from_checkpoint(path) == TINY
    enc = AVHubertVideoEncoder(**encoder_kwargs_from_checkpoint(path), checkpoint=path)
    assert enc.encoder.layers[1].fc1.weight.dtype == torch.float32
    fc1 = source["encoder.layers.1.fc1.weight"].float()
    assert torch.equal(enc.encoder.layers[1].fc1.weight, fc1)


def test_unexpected_pickled_object_is_refused_with_its_name(tmp_path):
    path = save(tmp_path / "odd.pt", fairseq_state_dict(), task_state_class=Payload, module="somelib.x")
    expected = "(?s)" + re.escape(path) + ".*somelib.x.Payload.*weights_only=False"
    with pytest.raises(AVHubertCheckpointError, match=expected):
        load_avhubert_checkpoint(path, AVHubertVideoEncoder(**TINY))


def test_unsupported_architecture_is_refused(tmp_path):
    cfg = {"model": {**MODEL_CFG, "layer_norm_first": False}}
    path = save(tmp_path / "post_ln.pt", fairseq_state_dict(), cfg)
    with pytest.raises(AVHubertCheckpointError, match="layer_norm_first=False"):
        encoder_kwargs_from_checkpoint(path)
