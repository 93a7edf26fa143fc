"""The CTranslate2 -> HF Whisper converter, on a tiny model written here in
CTranslate2's real layout (fused q/k/v, fused cross-attention k/v, float16,
scalar attributes, an aliased projection)."""

import json
import struct

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperModel

from local.pretrained.ct2 import CT2FormatError, read_ct2
from local.pretrained.whisper_ct2 import convert_whisper_ct2

SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("float16"): 4}


def write_ct2(path, name, variables, aliases):
    def string(f, s):
        f.write(struct.pack("<H", len(s) + 1) + s.encode() + b"\0")

    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6))
        string(f, name)
        f.write(struct.pack("<II", 3, len(variables)))
        for key, value in variables.items():
            value = np.asarray(value)
            string(f, key)
            f.write(struct.pack("<B", value.ndim) + struct.pack(f"<{value.ndim}I", *value.shape))
            f.write(struct.pack("<BI", DTYPE_IDS[value.dtype], value.nbytes))
            f.write(value.tobytes())
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            string(f, alias)
            string(f, target)


def ct2_layer(state, hf, ct2, cross):
    """The CTranslate2 variables of one HF Whisper layer (its converter's
    layout)."""
    half = lambda t: t.detach().numpy().astype(np.float16)  # noqa: E731
    out = {}

    def norm(hf_name, ct2_name):
        out[f"{ct2_name}/gamma"] = half(state[f"{hf_name}.weight"])
        out[f"{ct2_name}/beta"] = half(state[f"{hf_name}.bias"])

    def linear(hf_name, ct2_name):
        out[f"{ct2_name}/weight"] = half(state[f"{hf_name}.weight"])
        out[f"{ct2_name}/bias"] = half(state[f"{hf_name}.bias"])

    def fused(hf_names, ct2_name):
        out[f"{ct2_name}/weight"] = np.concatenate([half(state[f"{n}.weight"]) for n in hf_names])
        out[f"{ct2_name}/bias"] = np.concatenate(
            [half(state[f"{n}.bias"]) if f"{n}.bias" in state else np.zeros(len(state[f"{n}.weight"]), np.float16)
             for n in hf_names]
        )

    norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
    fused([f"{hf}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")], f"{ct2}/self_attention/linear_0")
    linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
    norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
    linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
    linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
    if cross:
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        fused([f"{hf}.encoder_attn.{p}" for p in ("k_proj", "v_proj")], f"{ct2}/attention/linear_1")
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
    return out


@pytest.fixture(scope="module")
def ct2_whisper(tmp_path_factory):
    """(CTranslate2 folder, the HF model it was written from)."""
    folder = tmp_path_factory.mktemp("ct2")
    vocab = {chr(0x100 + i): i for i in range(64)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.add_special_tokens(SPECIAL)
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=64 + len(SPECIAL), d_model=16, encoder_layers=2, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        num_mel_bins=80, max_source_positions=50, max_target_positions=20,
        pad_token_id=64, bos_token_id=64, eos_token_id=64, decoder_start_token_id=65,
    )
    model = WhisperForConditionalGeneration(config).eval()
    state = model.state_dict()
    half = lambda k: state[k].numpy().astype(np.float16)  # noqa: E731
    variables = {}
    for stack, n in (("encoder", 2), ("decoder", 1)):
        variables[f"{stack}/num_heads"] = np.array(2, np.int16)
        for i in range(n):
            variables.update(ct2_layer(state, f"model.{stack}.layers.{i}", f"{stack}/layer_{i}", stack == "decoder"))
        variables[f"{stack}/layer_norm/gamma"] = half(f"model.{stack}.layer_norm.weight")
        variables[f"{stack}/layer_norm/beta"] = half(f"model.{stack}.layer_norm.bias")
        variables[f"{stack}/position_encodings/encodings"] = half(f"model.{stack}.embed_positions.weight")
    for conv in ("conv1", "conv2"):
        variables[f"encoder/{conv}/weight"] = half(f"model.encoder.{conv}.weight")
        variables[f"encoder/{conv}/bias"] = half(f"model.encoder.{conv}.bias")
    variables["decoder/embeddings/weight"] = half("model.decoder.embed_tokens.weight")
    variables["decoder/scale_embeddings"] = np.array(0, np.int8)
    write_ct2(folder / "model.bin", "WhisperSpec", variables, {"decoder/projection/weight": "decoder/embeddings/weight"})
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [3], "suppress_ids_begin": [64]}))
    model.load_state_dict({k: v.half().float() for k, v in state.items()})
    return folder, model


def test_reader_reads_every_variable_and_alias(ct2_whisper):
    folder, _ = ct2_whisper
    variables = read_ct2(str(folder / "model.bin"))
    assert variables["encoder/layer_1/self_attention/linear_0/weight"].shape == (48, 16)
    assert variables["encoder/layer_1/self_attention/linear_0/weight"].dtype == np.float16
    assert int(variables["encoder/num_heads"]) == 2
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]


def test_converted_whisper_equals_its_source(ct2_whisper, tmp_path):
    folder, source = ct2_whisper
    convert_whisper_ct2(str(folder), str(tmp_path / "hf"))
    converted = WhisperForConditionalGeneration.from_pretrained(str(tmp_path / "hf")).eval()
    assert converted.config.encoder_layers == 2 and converted.config.d_model == 16
    assert converted.config.decoder_start_token_id == 65
    assert converted.generation_config.no_timestamps_token_id == 66
    feats = torch.randn(2, 80, 100)
    ids = torch.tensor([[65, 66, 5, 6]] * 2)
    with torch.no_grad():
        expected = source(input_features=feats, decoder_input_ids=ids).logits
        got = converted(input_features=feats, decoder_input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    # The encoder alone, as espnet_mtsk's Whisper encoder loads it.
    encoder = WhisperModel.from_pretrained(str(tmp_path / "hf")).get_encoder()
    with torch.no_grad():
        assert torch.allclose(encoder(feats).last_hidden_state, source.model.encoder(feats).last_hidden_state, atol=1e-5)


def test_truncated_or_foreign_files_are_errors_naming_the_file(ct2_whisper, tmp_path):
    folder, _ = ct2_whisper
    data = (folder / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CT2FormatError, match="model.bin: truncated"):
        read_ct2(str(tmp_path / "model.bin"))
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 2) + data[4:])
    with pytest.raises(CT2FormatError, match="version 2"):
        read_ct2(str(tmp_path / "model.bin"))
    with pytest.raises(FileNotFoundError, match="lacks config.json"):
        convert_whisper_ct2(str(tmp_path), str(tmp_path / "out"))
