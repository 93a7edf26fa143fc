"""A Llama-architecture GGUF file (llama.cpp's format, quantised or not) ->
a Hugging Face ``LlamaForCausalLM`` folder in float32.

transformers reads GGUF itself (with the ``gguf`` package) but marks the
model as quantised and refuses to ``save_pretrained`` it; the weights are
copied into a plain model of the same config instead. The result is
checked twice: every tensor against the ``gguf`` package's own
dequantisation of the file (llama.cpp stores q/k rows permuted for its
rotary layout, undone here), and the saved folder's logits against the GGUF
model's.
"""

from pathlib import Path
from typing import Dict

import numpy as np
import torch

GGUF_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class GGUFConversionError(ValueError):
    pass


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``."""
    parts = gguf_name.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{GGUF_NAMES[parts[2]]}.{parts[3]}"
    return f"{GGUF_NAMES[parts[0]]}.{parts[1]}"


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head interleaving of q/k rows (its converter
    writes ``w.reshape(heads, 2, rows // heads // 2, -1).swapaxes(1, 2)``)."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def dequantized_tensors(gguf_path: str, num_heads: int, num_kv_heads: int) -> Dict[str, np.ndarray]:
    """Every tensor of the file dequantised by the ``gguf`` package, under
    its HF name and in HF row order."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    out = {}
    for t in GGUFReader(gguf_path).tensors:
        array = dequantize(t.data, t.tensor_type).reshape(list(reversed(t.shape.tolist())))
        name = hf_name(t.name)
        if ".q_proj." in name:
            array = unpermute(array, num_heads)
        elif ".k_proj." in name:
            array = unpermute(array, num_kv_heads)
        out[name] = array.astype(np.float32)
    return out


def convert_gguf_llm(gguf_path: str, out_dir: str, check_text: str = "Transcribe speech to text.") -> Dict[str, float]:
    """Write the float32 HF folder (model and tokenizer) of ``gguf_path``;
    return the checks: the largest weight difference to the ``gguf``
    package's dequantisation, and the largest logit difference between the
    saved folder and transformers' GGUF model on ``check_text``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    path = Path(gguf_path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    source = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    if source.config.model_type != "llama":
        raise GGUFConversionError(f"{path}: a {source.config.model_type} model, not a Llama-architecture one")
    config = source.config
    config.quantization_config = None
    del config.quantization_config
    model = LlamaForCausalLM(config).eval()
    model.load_state_dict(source.state_dict(), strict=True)

    reference = dequantized_tensors(str(path), config.num_attention_heads, config.num_key_value_heads)
    state = model.state_dict()
    weight_diff = 0.0
    for key, array in reference.items():
        if tuple(state[key].shape) != array.shape:
            raise GGUFConversionError(f"{path}: {key} has shape {array.shape}, the model {tuple(state[key].shape)}")
        weight_diff = max(weight_diff, float((state[key] - torch.from_numpy(array)).abs().max()))
    not_in_file = [k for k in state if k not in reference and not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if not_in_file:
        raise GGUFConversionError(f"{path} lacks {', '.join(not_in_file)}")

    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    saved = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    ids = tokenizer(check_text, return_tensors="pt").input_ids
    with torch.no_grad():
        logit_diff = float((saved(ids).logits - source(ids).logits).abs().max())
    return {"max_weight_diff": weight_diff, "max_logit_diff": logit_diff}
