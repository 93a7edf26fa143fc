"""A Hugging Face causal LM (Llama first) reading audio-visual tokens.

Layout of one example, as embeddings, with no padding inside it::

    [BOS] <audio> A_1..A_n </audio> <video> V_1..V_m </video> PROMPT TARGET

The model predicts TARGET and EOS; every earlier position is ignored. Batches
are left-padded (padding masked out, positions counted from the first real
token), so every sequence ends at the last column: the logits that score the
target are then the last ``max(target length) + 1`` columns, and the LM head
never runs over the long audio-visual prefix.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet_mtsk.hf_folder import resolve_folder
from espnet_mtsk.llm.abs_llm import AbsLLM, Segment

MARKERS = {"audio": ("<audio>", "</audio>"), "video": ("<video>", "</video>")}
PAD_TOKEN = "<pad>"
PROMPTS = {
    ("audio",): "Transcribe speech to text.",
    ("video",): "Transcribe video to text.",
    ("audio", "video"): "Transcribe speech and video to text.",
}
IGNORE_ID = -100
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


def load_tokenizer(model_dir: str):
    """The folder's tokenizer with the AV marker and pad tokens added.

    Raises FileNotFoundError naming the folder when it holds no tokenizer.
    """
    from transformers import AutoTokenizer

    folder = resolve_folder(model_dir, (), "LLM")
    if not any((folder / name).exists() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"LLM folder {folder} has no tokenizer (none of {_TOKENIZER_FILES})"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    markers = [token for pair in MARKERS.values() for token in pair]
    tokenizer.add_special_tokens(
        {"additional_special_tokens": markers, "pad_token": PAD_TOKEN}
    )
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"The tokenizer in {folder} lacks a BOS or EOS token")
    return tokenizer


class HFCausalLM(AbsLLM):
    """Causal LM from a local HF folder (``config.json``, weights, tokenizer).

    ``forward(segments, ys_pad (B, L), ys_lens (B,))`` returns the mean
    cross-entropy over target tokens and EOS, and the token accuracy.
    ``generate(segments, beam_size, max_new_tokens)`` returns B strings.

    Args:
        model_dir: HF folder written by ``save_pretrained`` (or its config.json).
        dtype: dtype of the LLM weights ("float32", "bfloat16", "float16").
        train_new_embeddings: whether the four marker embeddings are trained.
            They live in ``marker_embed`` (initialised from the resized rows of
            the LLM's table), so training them never touches the big table.
        gradient_checkpointing: recompute LLM activations in backward.
    """

    @typechecked
    def __init__(
        self,
        model_dir: str,
        dtype: str = "float32",
        train_new_embeddings: bool = True,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(model_dir)
        folder = resolve_folder(model_dir, ("config.json",), "LLM")
        self.model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=getattr(torch, dtype)
        )
        self.model.resize_token_embeddings(len(self.tokenizer))
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
            # Inputs are embeddings we build, so checkpointed blocks need them
            # to carry grad for the recompute to reach the projectors.
            self.model.enable_input_require_grads()
        names = [token for pair in MARKERS.values() for token in pair]
        self.marker_index = {name: i for i, name in enumerate(names)}
        ids = torch.tensor(self.tokenizer.convert_tokens_to_ids(names))
        rows = self.model.get_input_embeddings().weight.detach()[ids].clone()
        self.marker_embed = torch.nn.Embedding.from_pretrained(
            rows.float(), freeze=not train_new_embeddings
        )
        self._prompt_ids: Dict[Tuple[str, ...], List[int]] = {
            key: self.tokenizer(text, add_special_tokens=False).input_ids
            for key, text in PROMPTS.items()
        }

    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().embedding_dim

    def _embed_ids(self, ids: Sequence[int], device: torch.device) -> torch.Tensor:
        table = self.model.get_input_embeddings()
        return table(torch.as_tensor(ids, dtype=torch.long, device=device))

    def _marker(self, name: str, device: torch.device) -> torch.Tensor:
        index = torch.tensor([self.marker_index[name]], device=device)
        return self.marker_embed(index)

    @typechecked
    def build_inputs(
        self,
        segments: Sequence[Segment],
        ys_pad: Optional[torch.Tensor] = None,
        ys_lens: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Left-padded LLM inputs for a batch.

        Returns ``inputs_embeds`` (B, S, D), ``attention_mask`` (B, S),
        ``position_ids`` (B, S) and, with targets, ``labels`` (B, K): the
        right-aligned next-token targets of the last K = max(ys_lens) + 1
        positions, IGNORE_ID wherever the position is not a target or EOS.
        """
        modalities = tuple(m for m, _, _ in segments)
        if modalities not in self._prompt_ids:
            raise ValueError(f"No prompt for modalities {modalities}")
        device = segments[0][1].device
        dtype = self.model.get_input_embeddings().weight.dtype
        bos = self._embed_ids([self.tokenizer.bos_token_id], device)
        prompt = self._embed_ids(self._prompt_ids[modalities], device)
        bsz = segments[0][1].size(0)
        rows = []
        for b in range(bsz):
            parts = [bos]
            for modality, embeds, lens in segments:
                open_name, close_name = MARKERS[modality]
                parts += [
                    self._marker(open_name, device),
                    embeds[b, : int(lens[b])],
                    self._marker(close_name, device),
                ]
            parts.append(prompt)
            if ys_pad is not None:
                parts.append(self._embed_ids(ys_pad[b, : int(ys_lens[b])], device))
            rows.append(torch.cat([p.to(dtype) for p in parts]))
        lengths = torch.tensor([r.size(0) for r in rows], device=device)
        width = int(lengths.max())
        inputs = rows[0].new_zeros(bsz, width, rows[0].size(-1))
        mask = torch.zeros(bsz, width, dtype=torch.long, device=device)
        for b, row in enumerate(rows):
            inputs[b, width - row.size(0) :] = row
            mask[b, width - row.size(0) :] = 1
        out = {
            "inputs_embeds": inputs,
            "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        }
        if ys_pad is not None:
            out["labels"] = self._labels(ys_pad, ys_lens)
        return out

    def _labels(self, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> torch.Tensor:
        keep = int(ys_lens.max()) + 1
        labels = ys_pad.new_full((ys_pad.size(0), keep), IGNORE_ID)
        for b, n in enumerate(ys_lens.tolist()):
            labels[b, keep - n - 1 : keep - 1] = ys_pad[b, :n]
            labels[b, keep - 1] = self.tokenizer.eos_token_id
        return labels

    def forward(
        self, segments: Sequence[Segment], ys_pad: torch.Tensor, ys_lens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        inputs = self.build_inputs(segments, ys_pad, ys_lens)
        labels = inputs.pop("labels")
        logits = self.model(**inputs, logits_to_keep=labels.size(1)).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_ID
        )
        scored = labels != IGNORE_ID
        correct = (logits.argmax(-1) == labels) & scored
        return loss, correct.sum() / scored.sum()

    @torch.no_grad()
    def generate(
        self, segments: Sequence[Segment], beam_size: int = 15, max_new_tokens: int = 32
    ) -> List[str]:
        inputs = self.build_inputs(segments)
        inputs.pop("position_ids")  # generate derives them from the mask
        out = self.model.generate(
            **inputs,
            num_beams=beam_size,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [t.strip() for t in texts]
