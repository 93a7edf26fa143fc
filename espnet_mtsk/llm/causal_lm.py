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
from espnet_mtsk.llm.abs_llm import AbsLLM, LossAcc, PerScale, Segment

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
        out = self._layout([segments], ys_pad, ys_lens)
        if ys_pad is not None:
            out["labels"] = self._labels(ys_pad, ys_lens)
        return out

    def _pieces(
        self,
        segments: Sequence[Segment],
        ys_pad: Optional[torch.Tensor],
        ys_lens: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One scale's inputs in prompt order, not yet packed: BOS, each
        modality's tokens between its markers, the prompt and (if given) the
        target. Returns embeddings (B, P, D) and their validity (B, P)."""
        modalities = tuple(m for m, _, _ in segments)
        if modalities not in self._prompt_ids:
            raise ValueError(f"No prompt for modalities {modalities}")
        device = segments[0][1].device
        dtype = self.model.get_input_embeddings().weight.dtype
        bsz = segments[0][1].size(0)

        def fixed(rows: torch.Tensor):
            return rows.to(dtype).expand(bsz, -1, -1), torch.ones(
                bsz, rows.size(0), dtype=torch.bool, device=device
            )

        def ragged(embeds: torch.Tensor, lens: torch.Tensor):
            steps = torch.arange(embeds.size(1), device=device)
            return embeds.to(dtype), steps[None] < lens.to(device)[:, None]

        parts = [fixed(self._embed_ids([self.tokenizer.bos_token_id], device))]
        for modality, embeds, lens in segments:
            open_name, close_name = MARKERS[modality]
            parts += [
                fixed(self._marker(open_name, device)),
                ragged(embeds, lens),
                fixed(self._marker(close_name, device)),
            ]
        parts.append(fixed(self._embed_ids(self._prompt_ids[modalities], device)))
        if ys_pad is not None:
            parts.append(ragged(self._embed_ids(ys_pad.clamp(min=0), device), ys_lens))
        return torch.cat([e for e, _ in parts], 1), torch.cat([v for _, v in parts], 1)

    def _layout(
        self,
        per_scale: PerScale,
        ys_pad: Optional[torch.Tensor],
        ys_lens: Optional[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Packs each row's valid pieces to the right of one shared width:
        (N x B, S) left-padded ``inputs_embeds``, ``attention_mask`` and
        ``position_ids`` for N scales. A scatter per scale rather than a
        loop over rows keeps the autograd graph small."""
        pieces = [self._pieces(segments, ys_pad, ys_lens) for segments in per_scale]
        width = max(int(valid.sum(1).max()) for _, valid in pieces)
        embeds_out, masks = [], []
        for embeds, valid in pieces:
            total = valid.sum(1, keepdim=True)
            # Valid pieces go to [width - total, width); the rest to a spare
            # column that is cut off.
            dest = torch.where(valid, width - total + valid.cumsum(1) - 1, width)
            packed = embeds.new_zeros(embeds.size(0), width + 1, embeds.size(2)).scatter(
                1, dest[..., None].expand_as(embeds), embeds
            )
            embeds_out.append(packed[:, :width])
            steps = torch.arange(width, device=valid.device)
            masks.append((steps[None] >= width - total).long())
        mask = torch.cat(masks)
        return {
            "inputs_embeds": torch.cat(embeds_out),
            "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        }

    def _labels(self, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> torch.Tensor:
        keep = int(ys_lens.max()) + 1
        labels = ys_pad.new_full((ys_pad.size(0), keep), IGNORE_ID)
        for b, n in enumerate(ys_lens.tolist()):
            labels[b, keep - n - 1 : keep - 1] = ys_pad[b, :n]
            labels[b, keep - 1] = self.tokenizer.eos_token_id
        return labels

    def forward(self, segments: Sequence[Segment], ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> LossAcc:
        return self.forward_scales([segments], ys_pad, ys_lens)[0]

    def forward_scales(self, per_scale: PerScale, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> List[LossAcc]:
        """(loss, accuracy) of each scale's segments, all scales in one
        padded batch of N x B rows: one LLM pass instead of N, which pays
        off where per-pass overhead dominates (small LLMs, CPUs). Only valid
        when every scale uses the same adapters."""
        inputs = self._layout(per_scale, ys_pad, ys_lens)
        labels = self._labels(ys_pad, ys_lens).repeat(len(per_scale), 1)
        logits = self.model(**inputs, logits_to_keep=labels.size(1)).logits
        out = []
        for logit, label in zip(logits.chunk(len(per_scale)), labels.chunk(len(per_scale))):
            loss = torch.nn.functional.cross_entropy(
                logit.float().flatten(0, 1), label.flatten(), ignore_index=IGNORE_ID
            )
            scored = label != IGNORE_ID
            correct = (logit.argmax(-1) == label) & scored
            out.append((loss, correct.sum() / scored.sum()))
        return out

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
