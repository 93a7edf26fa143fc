"""LoRA strategies through peft: which adapters exist and which a scale uses.

- ``ms``  (Multi-Scale): one ``global`` adapter shared by every scale.
- ``ss``  (Specific-Scale): one adapter per scale, named by the scale id.
- ``mss`` (Multi-Specific-Scale): ``global`` plus the scale's own, summed.
- ``none``: no adapter; the whole LLM trains (for tiny models only).

Size: peft's ``r`` and ``lora_alpha`` (scaling = lora_alpha / r). The
research code (Llama-AVSR ``models/Llama_LoRA.py``) gives the adapter width
as hidden_size / 32 (64 for Llama 3.2-1B's 2048, 128 for 3.1-8B's 4096) and
scales it by alpha / 32 = 4 / 32: ``r: 64, lora_alpha: 8`` reproduces it for
1B, ``r: 128, lora_alpha: 16`` for 8B (``conf/tuning/`` does so).
"""

from typing import List, Sequence

import torch
from typeguard import typechecked

GLOBAL = "global"


class LoRAStrategy:
    """Adds the strategy's adapters to an HF model and switches them per scale.

    Subclasses say which adapters exist (``adapter_names``) and which are
    active for one scale (``active_for``).
    """

    @typechecked
    def __init__(
        self,
        r: int = 8,
        lora_alpha: int = 32,
        lora_dropout: float = 0.05,
        target_modules: Sequence[str] = ("q_proj", "v_proj"),
    ):
        self.r = r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = list(target_modules)

    def adapter_names(self, scale_ids: Sequence[str]) -> List[str]:
        raise NotImplementedError

    def active_for(self, scale_id: str) -> List[str]:
        raise NotImplementedError

    def wrap(self, model: torch.nn.Module, scale_ids: Sequence[str]) -> torch.nn.Module:
        """Returns the peft model holding every adapter; the base is frozen."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )
        names = self.adapter_names(scale_ids)
        peft_model = get_peft_model(model, config, adapter_name=names[0])
        for name in names[1:]:
            peft_model.add_adapter(name, config)
        self._trainable = [
            p for n, p in peft_model.named_parameters() if ".lora_" in n
        ]
        # peft leaves only the first adapter trainable; DDP, built before the
        # first step, all-reduces the gradients of trainable parameters only,
        # so the others would train apart on every rank.
        for p in self._trainable:
            p.requires_grad_(True)
        return peft_model

    def shared(self, scale_ids: Sequence[str]) -> bool:
        """True when every scale uses the same adapters, so that the scales
        can share one LLM pass."""
        return len({tuple(self.active_for(s)) for s in scale_ids}) == 1

    def activate(self, model: torch.nn.Module, scale_id: str) -> None:
        """Makes exactly the scale's adapters act in the next forward."""
        model.base_model.set_adapter(self.active_for(scale_id))
        # peft freezes the adapters it switches off; all of them must keep
        # training, since the next scale of the same step switches them back on.
        for p in self._trainable:
            p.requires_grad_(True)


class MSLoRA(LoRAStrategy):
    def adapter_names(self, scale_ids: Sequence[str]) -> List[str]:
        return [GLOBAL]

    def active_for(self, scale_id: str) -> List[str]:
        return [GLOBAL]


class SSLoRA(LoRAStrategy):
    def adapter_names(self, scale_ids: Sequence[str]) -> List[str]:
        return list(scale_ids)

    def active_for(self, scale_id: str) -> List[str]:
        return [scale_id]


class MSSLoRA(LoRAStrategy):
    def adapter_names(self, scale_ids: Sequence[str]) -> List[str]:
        return [GLOBAL, *scale_ids]

    def active_for(self, scale_id: str) -> List[str]:
        return [GLOBAL, scale_id]


class NoLoRA(LoRAStrategy):
    """Full fine-tuning: the model is returned as is, every weight trainable."""

    def wrap(self, model: torch.nn.Module, scale_ids: Sequence[str]) -> torch.nn.Module:
        return model

    def active_for(self, scale_id: str) -> List[str]:
        return []

    def activate(self, model: torch.nn.Module, scale_id: str) -> None:
        pass
