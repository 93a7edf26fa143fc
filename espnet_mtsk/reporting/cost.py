"""What a scale costs the LLM, from a training config alone.

Every scale feeds the LLM ``encoder frame rate / compression rate`` tokens
per second of speech and modality (avg-pool and stack alike). The encoder
frame rates follow from the config: Whisper encodes 100 Hz mel frames with a
stride-2 convolution (50 Hz), ESPnet's conformer subsamples its front end's
frames by its ``input_layer``, AV-HuBERT keeps the 25 fps video rate. The
LLM's prefill FLOPs for a prompt of n tokens count its matrix products:
per layer 2 n (d (d + 2 d_kv) + d d + 3 d d_ff) for the projections and MLP
and 2 n^2 d for causal attention (scores and values, half of the square
each), plus the LM head for the last position.
"""

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping

from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS
from espnet_mtsk.scales import Scale

# ESPnet's conformer input layers and their time subsampling.
SUBSAMPLING = {"conv2d": 4, "conv2d1": 1, "conv2d2": 2, "conv2d6": 6, "conv2d8": 8, "linear": 1, "embed": 1}
WHISPER_FPS = 50.0

# Public shapes of the paper's LLMs, for configs whose LLM folder is not on
# this machine (``config.json`` keys of their HF folders).
LLM_SHAPES: Dict[str, Dict[str, int]] = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                         num_attention_heads=24, num_key_value_heads=8, vocab_size=128256),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
}


def encoder_frame_rates(config: Mapping) -> Dict[str, float]:
    """Frames per second of each configured encoder's output."""
    rates = {}
    audio = config.get("audio_encoder")
    if audio == "whisper":
        rates["audio"] = WHISPER_FPS
    elif audio is not None:
        # 128 samples: the hop of ESPnet's default frontend.
        hop = (config.get("frontend_conf") or {}).get("hop_length", 128)
        layer = (config.get("audio_encoder_conf") or {}).get("input_layer", "conv2d")
        if layer not in SUBSAMPLING:
            raise ValueError(f"audio_encoder_conf.input_layer '{layer}': unknown subsampling")
        rates["audio"] = SAMPLE_RATE / hop / SUBSAMPLING[layer]
    if config.get("video_encoder") is not None:
        rates["video"] = VIDEO_FPS
    return rates


@dataclass
class PrefillCost:
    scale: str
    tokens_per_sec: float
    sequence: int
    prefill_gflops: float


def prefill_flops(n: int, shape: Mapping[str, int]) -> float:
    """FLOPs of one forward over n tokens (the LM head for the last one only)."""
    d, d_ff = shape["hidden_size"], shape["intermediate_size"]
    d_kv = d * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = 2 * n * (d * (d + 2 * d_kv) + d * d + 3 * d * d_ff) + 2 * n * n * d
    return shape["num_hidden_layers"] * per_layer + 2 * d * shape["vocab_size"]


def scale_costs(
    scales: List[Scale],
    frame_rates: Mapping[str, float],
    shape: Mapping[str, int],
    seconds: float,
    prompt_tokens: Mapping[tuple, int],
) -> List[PrefillCost]:
    """Per scale: tokens/s, the prompt length for ``seconds`` of speech
    (BOS, audio-visual tokens between their markers, the instruction of
    ``prompt_tokens[modalities]`` tokens), and
    its prefill GFLOPs."""
    out = []
    for scale in scales:
        per_sec = sum(frame_rates[m] / r for m, r in scale.rates)
        av = sum(math.ceil(frame_rates[m] * seconds / r) for m, r in scale.rates)
        n = 1 + 2 * len(scale.rates) + av + prompt_tokens[scale.modalities]
        out.append(PrefillCost(scale.id, per_sec, n, prefill_flops(n, shape) / 1e9))
    return out
