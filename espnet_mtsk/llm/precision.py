"""The dtypes of the LLM's weights and matrix products: bfloat16 where the
device multiplies it in hardware, float32 elsewhere (emulated bf16 is
slower than float32)."""

from typing import Optional

import torch

AUTOCAST_CHOICES = ("auto", "bfloat16", "none")


def native_bf16(device: torch.device) -> bool:
    """Whether the device multiplies bfloat16 matrices in hardware: AVX-512
    BF16 or AMX on a CPU, compute capability 8 or later on a GPU. Elsewhere
    bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def autocast_dtype(autocast: str, device: torch.device) -> Optional[torch.dtype]:
    """The dtype the LLM's matrix products run in under ``autocast``
    ("auto": bfloat16 where the device has it natively; "bfloat16"; "none"),
    or None for no autocast."""
    if autocast not in AUTOCAST_CHOICES:
        raise ValueError(f"llm_conf.autocast must be one of {AUTOCAST_CHOICES}, got '{autocast}'")
    if autocast == "bfloat16" or (autocast == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


def weights_dtype(dtype: str) -> torch.dtype:
    """``llm_conf.dtype`` -> the dtype the LLM's weights are stored in:
    "auto" is bfloat16 where this machine's CPU multiplies it natively
    (``native_bf16``), float32 elsewhere: on an AMD EPYC without AVX-512,
    SmolLM2's forward pass took 10.5 s with bf16 weights and 1.7 s with
    float32 ones. The model is built on the CPU before it moves to a GPU,
    where autocast still runs bf16."""
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(torch.device("cpu")) else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"llm_conf.dtype must be auto, float32, bfloat16 or float16, got '{dtype}'")
    return getattr(torch, dtype)
