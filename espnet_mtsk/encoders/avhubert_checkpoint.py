"""Load an official fairseq AV-HuBERT checkpoint into ``AVHubertVideoEncoder``.

The released files (facebookresearch/av_hubert: ``base_vox_iter5.pt``,
``large_vox_iter5.pt``, the fine-tuned ``*_30h.pt`` / ``*_433h.pt``) are
fairseq checkpoints: a dict with ``model`` (the state dict), ``cfg`` (a plain
dict; older files have ``args``, an ``argparse.Namespace``) and bookkeeping
(``optimizer_history``, ``extra_state``, ``task_state``) that is not used here.

Only the video path is loaded; the encoder must be built with
``modality_fuse="concat"`` (see ``encoder_kwargs_from_checkpoint``), because
AV-HuBERT projects the ResNet features to ``encoder_embed_dim`` and normalises
them next to an (absent, all-zero) audio half before ``post_extract_proj``.

Usage::

    kwargs = encoder_kwargs_from_checkpoint("large_vox_iter5.pt")
    encoder = AVHubertVideoEncoder(**kwargs, checkpoint="large_vox_iter5.pt")

or in YAML, ``video_encoder_conf: {checkpoint: ..., modality_fuse: concat}``
plus the sizes when they differ from the (Large) defaults.
"""

import argparse
import pickle
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch

Checkpoint = Union[str, Path, dict]

# Fine-tuned files wrap the pre-trained model: AVHubertSeq2Seq keeps it at
# encoder.w2v_model, AVHubertCtc at w2v_encoder.w2v_model.
FINETUNED_PREFIXES = ("encoder.w2v_model.", "w2v_encoder.w2v_model.")

# Checkpoint key (after the prefix is stripped) -> encoder key. Every key must
# match one rule or one IGNORED_KEYS pattern; anything else is reported.
KEY_RULES: Tuple[Tuple[str, str], ...] = (
    (r"feature_extractor_video\.resnet\.(frontend3D|trunk)\..+", r"\g<0>"),
    (r"feature_extractor_video\.proj\.(weight|bias)", r"\g<0>"),
    (r"(layer_norm|post_extract_proj)\.(weight|bias)", r"\g<0>"),
    # fairseq: pos_conv = Sequential(weight-normed Conv1d, SamePad, GELU).
    (r"encoder\.pos_conv\.0\.(weight|bias)", r"encoder.pos_conv.\1"),
    (
        r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|self_attn_layer_norm"
        r"|fc1|fc2|final_layer_norm)\.(weight|bias)",
        r"\g<0>",
    ),
    (r"encoder\.layer_norm\.(weight|bias)", r"\g<0>"),
)

# Dropped on purpose: we encode video only, and none of these run at inference.
IGNORED_KEYS: Tuple[str, ...] = (
    r"feature_extractor_audio\..+",  # audio branch
    r"mask_emb",  # input masking during pre-training
    r"final_proj\..+|label_embs_concat|target_glu\..+",  # pre-training heads
    r"decoder\..+",  # seq2seq fine-tuning: the text decoder
    r"w2v_encoder\.proj\..+",  # CTC fine-tuning: the output layer
)

# torch.nn.utils.weight_norm saves (weight_g, weight_v); the newer
# parametrizations API saves (original0, original1) = (g, v).
_WEIGHT_NORM_PAIRS = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)
_POS_CONV = "encoder.pos_conv.0."

# fairseq also pickles objects into task_state (av_hubert's misc/fix_state.py
# adds the label dictionaries and, for fine-tuned files, the sentencepiece
# tokenizer). weights_only refuses them; these names alone are let through, as
# an inert placeholder, so nothing from them runs and anything else is refused.
_BOOKKEEPING_GLOBALS = (
    "fairseq.data.dictionary.Dictionary",
    "fairseq.data.encoders.sentencepiece_bpe.SentencepieceBPE",
    "sentencepiece.SentencePieceProcessor",
)

# AVHubertConfig defaults, for fields an older cfg may lack.
_CFG_DEFAULTS = dict(
    encoder_layers=12,
    encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072,
    encoder_attention_heads=12,
    conv_pos=128,
    conv_pos_groups=16,
    layer_norm_first=False,
    modality_fuse="concat",
    sub_encoder_layers=0,
    activation_fn="gelu",
    resnet_relu_type="prelu",
)
# What AVHubertVideoEncoder implements; another value changes the computation.
_CFG_REQUIRED = dict(
    layer_norm_first=True,
    modality_fuse="concat",
    sub_encoder_layers=0,
    activation_fn="gelu",
    resnet_relu_type="prelu",
)


class AVHubertCheckpointError(RuntimeError):
    """The file cannot be read safely, or does not fit the encoder."""


class _Discarded:
    """Takes any pickled state, keeps none, runs nothing."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def read_avhubert_checkpoint(path: Union[str, Path]) -> dict:
    """``torch.load(weights_only=True)`` that tolerates fairseq's bookkeeping."""
    allowed = [(_Discarded, name) for name in _BOOKKEEPING_GLOBALS]
    allowed.append(argparse.Namespace)  # ``args`` of older fairseq files
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # e.g. a pre-zip file: torch's message still says why
            names = []
        names = [n for n in names if n not in _BOOKKEEPING_GLOBALS and n != "argparse.Namespace"]
        raise AVHubertCheckpointError(
            f"{path}: torch.load(weights_only=True) refuses the pickled objects "
            f"{', '.join(names) or '(see the error above)'}. Only if you trust the "
            "file, keep its weights and config once, then load the new file:\n"
            "  python -c \"import sys, torch; c = torch.load(sys.argv[1], "
            "weights_only=False); torch.save({'cfg': c.get('cfg'), 'args': "
            "c.get('args'), 'model': c['model']}, sys.argv[2])\" IN.pt OUT.pt"
        ) from e


def fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The weight of fairseq's ``weight_norm(pos_conv, dim=2)``: one gain per
    kernel tap, ``v`` normalised over (out, in/groups) for each tap."""
    v = v.float()
    return v * (g.float() / v.norm(dim=(0, 1), keepdim=True))


def _video_state_dict(model: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Strip a fine-tuning prefix and fold pos_conv's weight norm."""
    state = {}
    for key, value in model.items():
        for prefix in FINETUNED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        state[key] = value
    for g_name, v_name in _WEIGHT_NORM_PAIRS:
        g_key, v_key = _POS_CONV + g_name, _POS_CONV + v_name
        if g_key in state and v_key in state:
            state[_POS_CONV + "weight"] = fold_weight_norm(state.pop(g_key), state.pop(v_key))
    return state


def _rename(key: str) -> Optional[str]:
    for pattern, target in KEY_RULES:
        match = re.fullmatch(pattern, key)
        if match:
            return match.expand(target)
    return None


def _listing(title: str, items: List[str], limit: int = 20) -> str:
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"\n  {title} ({len(items)}): {', '.join(items[:limit])}{more}"


def _read(checkpoint: Checkpoint) -> Tuple[dict, str]:
    if isinstance(checkpoint, dict):
        return checkpoint, "<checkpoint dict>"
    return read_avhubert_checkpoint(checkpoint), str(checkpoint)


def load_avhubert_checkpoint(checkpoint: Checkpoint, encoder: torch.nn.Module) -> None:
    """Copy the video path of an AV-HuBERT checkpoint (file or loaded dict)
    into ``encoder``; raise ``AVHubertCheckpointError`` naming the file and
    every unknown key, missing key and shape mismatch otherwise."""
    ckpt, name = _read(checkpoint)
    if "model" not in ckpt:
        raise AVHubertCheckpointError(f"{name}: no 'model' state dict (keys: {sorted(ckpt)})")
    ours = encoder.state_dict()
    mapped, found, unknown, mismatched = {}, set(), [], []
    for key, value in _video_state_dict(ckpt["model"]).items():
        if any(re.fullmatch(p, key) for p in IGNORED_KEYS):
            continue
        target = _rename(key)
        if target is None or target not in ours:
            unknown.append(key)
            continue
        found.add(target)
        if value.shape != ours[target].shape:
            mismatched.append(f"{key} {tuple(value.shape)} vs encoder {tuple(ours[target].shape)}")
        else:
            mapped[target] = value
    missing = [k for k in ours if k not in found]
    if unknown or missing or mismatched:
        raise AVHubertCheckpointError(
            f"{name} does not fit {type(encoder).__name__} (build it with "
            "encoder_kwargs_from_checkpoint)"
            + (_listing("unknown keys", unknown) if unknown else "")
            + (_listing("missing keys", missing) if missing else "")
            + (_listing("shape mismatches", mismatched) if mismatched else "")
        )
    encoder.load_state_dict(mapped)


def _as_dict(obj) -> dict:
    return vars(obj) if isinstance(obj, argparse.Namespace) else dict(obj or {})


def _model_cfg(ckpt: dict) -> dict:
    cfg = ckpt.get("cfg")
    model = _as_dict(cfg.get("model")) if cfg else _as_dict(ckpt.get("args"))
    # Fine-tuned files keep the pre-trained model's config in w2v_args.
    w2v = _as_dict(model.get("w2v_args"))
    if w2v:
        model = _as_dict(w2v["model"]) if "model" in w2v else w2v
    return model


def encoder_kwargs_from_checkpoint(checkpoint: Checkpoint) -> dict:
    """``AVHubertVideoEncoder`` constructor arguments matching the checkpoint.

    Sizes come from the checkpoint's cfg; the ResNet widths, which AV-HuBERT
    hard-codes instead of configuring, from the weights' shapes.
    """
    ckpt, name = _read(checkpoint)
    model_cfg = _model_cfg(ckpt)
    if not model_cfg:
        raise AVHubertCheckpointError(f"{name}: no model config in 'cfg' or 'args'")
    cfg = {k: model_cfg.get(k, default) for k, default in _CFG_DEFAULTS.items()}
    unsupported = [f"{k}={cfg[k]!r}" for k, want in _CFG_REQUIRED.items() if cfg[k] != want]
    if unsupported:
        raise AVHubertCheckpointError(
            f"{name}: AVHubertVideoEncoder implements only {_CFG_REQUIRED}, "
            f"the checkpoint has {', '.join(unsupported)}"
        )
    state = _video_state_dict(ckpt.get("model", {}))
    resnet = "feature_extractor_video.resnet."
    try:
        stem = state[resnet + "frontend3D.0.weight"].shape[0]
        widths = [state[f"{resnet}trunk.layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5)]
    except KeyError as e:
        raise AVHubertCheckpointError(f"{name}: no video ResNet weight {e}") from e
    return dict(
        stem_channels=stem,
        resnet_channels=widths,
        d_model=cfg["encoder_embed_dim"],
        num_heads=cfg["encoder_attention_heads"],
        ffn_dim=cfg["encoder_ffn_embed_dim"],
        num_layers=cfg["encoder_layers"],
        pos_conv_kernel=cfg["conv_pos"],
        pos_conv_groups=cfg["conv_pos_groups"],
        modality_fuse="concat",
    )
