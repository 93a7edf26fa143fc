"""The GGUF -> HF Llama converter, on a tiny Llama written here as llama.cpp
writes one (q/k rows permuted for its rotary layout, some tensors Q8_0, a
byte-level BPE tokenizer in the metadata, tied embeddings)."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

gguf = pytest.importorskip("gguf")

from local.pretrained.gguf_llm import GGUF_NAMES, convert_gguf_llm  # noqa: E402

HEADS, KV_HEADS = 4, 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def byte_tokens():
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    """(GGUF path, the HF model it was written from, the Q8_0 tensor names)."""
    tokens = byte_tokens() + ["Ġt", "he"] + SPECIAL
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=len(tokens) - 2, eos_token_id=len(tokens) - 1, pad_token_id=len(tokens) - 1,
    )
    model = LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("gguf") / "tiny.Q8_0.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(64 // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 3) + [3] * 3)
    writer.add_token_merges(["Ġ t", "h e"])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_pad_token_id(config.pad_token_id)
    hf_to_gguf = {v: k for k, v in GGUF_NAMES.items()}
    quantized = []
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        module, param = name.rsplit(".", 1)
        if module.startswith("model.layers."):
            _, _, layer, inner = module.split(".", 3)
            gguf_name = f"blk.{layer}.{hf_to_gguf[inner]}.{param}"
        else:
            gguf_name = f"{hf_to_gguf[module]}.{param}"
        array = tensor.numpy()
        if name.endswith("q_proj.weight"):
            array = permute(array, HEADS)
        elif name.endswith("k_proj.weight"):
            array = permute(array, KV_HEADS)
        if array.ndim == 2 and "mlp" in name:
            writer.add_tensor(gguf_name, gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0),
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            quantized.append(name)
        else:
            writer.add_tensor(gguf_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, model, quantized


def test_converted_llama_holds_the_files_weights(tiny_gguf, tmp_path):
    path, source, quantized = tiny_gguf
    checks = convert_gguf_llm(str(path), str(tmp_path / "hf"), check_text="the tea")
    assert checks == {"max_weight_diff": 0.0, "max_logit_diff": 0.0}
    converted = LlamaForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert converted.config.num_key_value_heads == KV_HEADS and converted.config.tie_word_embeddings
    assert converted.config.to_dict().get("quantization_config") is None
    state, expected = converted.state_dict(), source.state_dict()
    for name in expected:
        if name in quantized:
            # Q8_0 keeps 8 bits per weight: close, not equal.
            assert torch.allclose(state[name], expected[name], atol=0.02), name
        else:
            # Unquantized tensors come back exactly: q/k rows unpermuted.
            assert torch.equal(state[name], expected[name]), name
    ids = torch.tensor([[5, 70, 200, 258]])
    with torch.no_grad():
        assert torch.allclose(converted(ids).logits, source(ids).logits, atol=0.05)
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert tokenizer.decode(tokenizer("the tea").input_ids) == "the tea"
    assert tokenizer.eos_token == "<|im_end|>"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.gguf"):
        convert_gguf_llm(str(tmp_path / "nothing.gguf"), str(tmp_path / "out"))
