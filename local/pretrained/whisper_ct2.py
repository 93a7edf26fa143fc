"""A CTranslate2 Whisper model (``model.bin``, ``config.json``,
``tokenizer.json``, as faster-whisper uses) -> a Hugging Face
``WhisperForConditionalGeneration`` folder.

CTranslate2 keeps Whisper's weights under its own spec names, with the
self-attention q/k/v fused in ``self_attention/linear_0`` and the
cross-attention k/v in ``attention/linear_1``; Whisper's k projections have
no bias, so CTranslate2 stores zeros there, dropped here.
"""

import json
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from local.pretrained.ct2 import CT2FormatError, read_ct2

LAYER_NORM = {"gamma": "weight", "beta": "bias"}


def _layer_norm(src: Dict[str, np.ndarray], ct2: str, hf: str) -> Dict[str, np.ndarray]:
    return {f"{hf}.{LAYER_NORM[p]}": src[f"{ct2}/{p}"] for p in LAYER_NORM}


def _linear(src: Dict[str, np.ndarray], ct2: str, hf: str) -> Dict[str, np.ndarray]:
    return {f"{hf}.{p}": src[f"{ct2}/{p}"] for p in ("weight", "bias")}


def _fused(src: Dict[str, np.ndarray], ct2: str, hfs) -> Dict[str, np.ndarray]:
    """Split a fused projection into ``hfs`` (prefixes; ``.k_proj`` gets no
    bias, as in Whisper)."""
    out = {}
    weights = np.split(src[f"{ct2}/weight"], len(hfs))
    biases = np.split(src[f"{ct2}/bias"], len(hfs))
    for hf, w, b in zip(hfs, weights, biases):
        out[f"{hf}.weight"] = w
        if not hf.endswith("k_proj"):
            out[f"{hf}.bias"] = b
    return out


def _layer(src, ct2: str, hf: str, cross: bool) -> Dict[str, np.ndarray]:
    sa = f"{ct2}/self_attention"
    out = {
        **_layer_norm(src, f"{sa}/layer_norm", f"{hf}.self_attn_layer_norm"),
        **_fused(src, f"{sa}/linear_0", [f"{hf}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]),
        **_linear(src, f"{sa}/linear_1", f"{hf}.self_attn.out_proj"),
        **_layer_norm(src, f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
        **_linear(src, f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        **_linear(src, f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
    }
    if cross:
        ca = f"{ct2}/attention"
        out.update(_layer_norm(src, f"{ca}/layer_norm", f"{hf}.encoder_attn_layer_norm"))
        out.update(_linear(src, f"{ca}/linear_0", f"{hf}.encoder_attn.q_proj"))
        out.update(_fused(src, f"{ca}/linear_1", [f"{hf}.encoder_attn.{p}" for p in ("k_proj", "v_proj")]))
        out.update(_linear(src, f"{ca}/linear_2", f"{hf}.encoder_attn.out_proj"))
    return out


def _num_layers(src: Dict[str, np.ndarray], stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in src:
        n += 1
    return n


def whisper_state_dict(src: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    """CTranslate2 Whisper variables -> ``WhisperForConditionalGeneration``
    state dict (float32)."""
    out = {}
    for stack in ("encoder", "decoder"):
        for i in range(_num_layers(src, stack)):
            out.update(_layer(src, f"{stack}/layer_{i}", f"model.{stack}.layers.{i}", stack == "decoder"))
        out.update(_layer_norm(src, f"{stack}/layer_norm", f"model.{stack}.layer_norm"))
        out[f"model.{stack}.embed_positions.weight"] = src[f"{stack}/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        out.update(_linear(src, f"encoder/{conv}", f"model.encoder.{conv}"))
    out["model.decoder.embed_tokens.weight"] = src["decoder/embeddings/weight"]
    out["proj_out.weight"] = src.get("decoder/projection/weight", src["decoder/embeddings/weight"])
    return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in out.items()}


def whisper_config(src: Dict[str, np.ndarray], special: Dict[str, int]):
    """A ``WhisperConfig`` with the shapes of the weights and the special
    token ids of the tokenizer."""
    from transformers import WhisperConfig

    vocab, d_model = src["decoder/embeddings/weight"].shape
    return WhisperConfig(
        vocab_size=int(vocab),
        d_model=int(d_model),
        num_mel_bins=int(src["encoder/conv1/weight"].shape[1]),
        encoder_layers=_num_layers(src, "encoder"),
        decoder_layers=_num_layers(src, "decoder"),
        encoder_attention_heads=int(src["encoder/num_heads"]),
        decoder_attention_heads=int(src["decoder/num_heads"]),
        encoder_ffn_dim=int(src["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(src["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(src["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(src["decoder/position_encodings/encodings"].shape[0]),
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
        pad_token_id=special["<|endoftext|>"],
        decoder_start_token_id=special["<|startoftranscript|>"],
        tie_word_embeddings=True,
    )


def special_tokens(tokenizer_json: Path) -> Dict[str, int]:
    added = json.loads(tokenizer_json.read_text())["added_tokens"]
    ids = {t["content"]: t["id"] for t in added}
    needed = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")
    missing = [t for t in needed if t not in ids]
    if missing:
        raise CT2FormatError(f"{tokenizer_json} lacks the Whisper special tokens {', '.join(missing)}")
    return ids


def convert_whisper_ct2(src_dir: str, out_dir: str) -> None:
    """Write the HF folder (model, generation config, tokenizer, feature
    extractor) of the CTranslate2 Whisper model in ``src_dir``."""
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizerFast,
    )

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (src_dir / name).is_file():
            raise FileNotFoundError(f"CTranslate2 Whisper folder {src_dir} lacks {name}")
    variables = read_ct2(str(src_dir / "model.bin"))
    ct2_config = json.loads((src_dir / "config.json").read_text())
    special = special_tokens(src_dir / "tokenizer.json")
    config = whisper_config(variables, special)
    model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(whisper_state_dict(variables), strict=False)
    # proj_out is tied to the token embeddings; nothing else may be left out.
    missing = [k for k in result.missing_keys if k != "proj_out.weight"]
    if missing or result.unexpected_keys:
        raise CT2FormatError(
            f"{src_dir / 'model.bin'} does not fit Whisper: missing {missing}, "
            f"unexpected {result.unexpected_keys}"
        )
    multilingual = config.vocab_size >= 51865
    model.generation_config = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        no_timestamps_token_id=special["<|notimestamps|>"],
        is_multilingual=multilingual,
        alignment_heads=ct2_config.get("alignment_heads"),
        max_length=config.max_target_positions,
    )
    model.save_pretrained(str(out_dir))
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(src_dir / "tokenizer.json"))
    tokenizer.save_pretrained(str(out_dir))
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(str(out_dir))
