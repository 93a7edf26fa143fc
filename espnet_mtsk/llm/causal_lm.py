"""A Hugging Face causal LM (Llama first) reading audio-visual tokens.

Layout of one example, as embeddings, with no padding inside it::

    [BOS] <audio> A_1..A_n </audio> <video> V_1..V_m </video> PROMPT TARGET

The model predicts TARGET and EOS; every earlier position is ignored. Batches
are left-padded (padding masked out, positions counted from the first real
token), so every sequence ends at the last column: the logits that score the
target are then the last ``max(target length) + 1`` columns, and the LM head
never runs over the long audio-visual prefix.
"""

import contextlib
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet_mtsk.hf_folder import resolve_folder
from espnet_mtsk.llm.abs_llm import AbsLLM, LossAcc, PerScale, PromptPart
from espnet_mtsk.llm.precision import autocast_dtype, weights_dtype

MARKERS = {"audio": ("<audio>", "</audio>"), "video": ("<video>", "</video>")}
PAD_TOKEN = "<pad>"
PROMPTS = {
    ("audio",): "Transcribe speech to text.",
    ("video",): "Transcribe video to text.",
    ("audio", "video"): "Transcribe speech and video to text.",
}
IGNORE_ID = -100
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
# Rows of an LLM's table summed at a time in float64: Llama 3.2 1B's whole
# table would take 2 GB.
_CHUNK_ROWS = 8192


def _contiguous_inputs(module: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def added_rows(table: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` float64 rows (count, D) for tokens added to ``table`` (V, D):
    its mean row plus, for the i-th, a cosine of frequency i over the D
    dimensions scaled to 1% of each dimension's spread, so that no two are
    alike. The rows are frozen and left out of checkpoints, so they are a
    function of the pretrained table alone: decoding rebuilds them bit for
    bit whatever the random state or the transformers version."""
    rows = table.detach()
    total = sum(chunk.double().sum(0) for chunk in rows.split(_CHUNK_ROWS))
    squares = sum(chunk.double().square().sum(0) for chunk in rows.split(_CHUNK_ROWS))
    mean = total / rows.size(0)
    spread = (squares / rows.size(0) - mean.square()).clamp(min=0).sqrt()
    dims = torch.arange(rows.size(1), dtype=torch.float64)
    freqs = torch.arange(1, count + 1, dtype=torch.float64)[:, None]
    return mean + 0.01 * spread * torch.cos(math.pi * freqs * (dims + 0.5) / rows.size(1))


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

    ``forward(parts, ys_pad (B, L), ys_lens (B,))`` returns the mean
    cross-entropy over target tokens and EOS, and the token accuracy.
    ``generate(parts, beam_size, max_new_tokens)`` returns B strings.

    Args:
        model_dir: HF folder written by ``save_pretrained`` (or its config.json).
        dtype: dtype of the LLM weights ("float32", "bfloat16", "float16";
            "auto": ``weights_dtype``).
        train_new_embeddings: whether the four marker embeddings are trained.
            They live in ``marker_embed`` (initialised from the resized rows of
            the LLM's table), so training them never touches the big table.
        gradient_checkpointing: recompute LLM activations in backward.
        autocast: "auto" runs the LLM's passes (training and ``generate``)
            under bfloat16 autocast where the device multiplies bf16 in
            hardware (``native_bf16``), "bfloat16" always, "none" never.
            ESPnet's trainer autocasts on CUDA only (``use_amp``); this
            serves CPUs too, and only the LLM. Losses are float32.
        attn_implementation: transformers' attention ("sdpa", its default,
            "eager", ...). On the CPU "eager" trains faster at SynthGRID's
            lengths: SDPA's flash-attention backward took a fifth of a
            SmolLM2 step (docs/benchmarks.md).
        length_buckets: passes that ``forward_scales`` splits the rows of
            all scales into, grouped by length (1: one padded pass).
    """

    @typechecked
    def __init__(
        self,
        model_dir: str,
        dtype: str = "float32",
        train_new_embeddings: bool = True,
        gradient_checkpointing: bool = False,
        autocast: str = "auto",
        attn_implementation: str = "sdpa",
        length_buckets: int = 1,
    ):
        super().__init__()
        autocast_dtype(autocast, torch.device("cpu"))  # rejects a bad value now
        self.autocast = autocast
        if length_buckets < 1:
            raise ValueError(f"llm_conf.length_buckets must be at least 1, got {length_buckets}")
        self.length_buckets = length_buckets
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(model_dir)
        folder = resolve_folder(model_dir, ("config.json",), "LLM")
        self.model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=weights_dtype(dtype), attn_implementation=attn_implementation
        )
        known = self.model.get_input_embeddings().num_embeddings
        # transformers draws the rows it adds at random, by a method it may
        # change; ours replace them (added_rows). Its draws are kept from
        # moving the random state the rest of the model is initialised from.
        with torch.random.fork_rng(devices=[]):
            self.model.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
        self._init_added_rows(known)
        # On the CPU a bf16 linear copies its weight once per row when its 3-D
        # input is not contiguous, as the slices that logits_to_keep and
        # generate hand the LM head are: 10 s instead of 0.03 s for
        # SmolLM2's head on 64 rows.
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_inputs)
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

    @torch.no_grad()
    def _init_added_rows(self, known: int) -> None:
        """Sets the rows past the first ``known`` of the embedding table, and
        of the LM head when it has its own, to ``added_rows``."""
        tables = [self.model.get_input_embeddings().weight]
        head = self.model.get_output_embeddings().weight
        if head is not tables[0]:
            tables.append(head)
        for table in tables:
            if table.size(0) > known:
                table[known:] = added_rows(table[:known], table.size(0) - known).to(table.dtype)

    def autocast_context(self, device: torch.device):
        """The autocast of the LLM's passes on ``device`` (see ``autocast``)."""
        dtype = autocast_dtype(self.autocast, device)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

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
        parts: Sequence[PromptPart],
        ys_pad: Optional[torch.Tensor] = None,
        ys_lens: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Left-padded LLM inputs for a batch.

        Returns ``inputs_embeds`` (B, S, D), ``attention_mask`` (B, S),
        ``position_ids`` (B, S) and, with targets, ``labels`` (B, K): the
        right-aligned next-token targets of the last K = max(ys_lens) + 1
        positions, IGNORE_ID wherever the position is not a target or EOS.
        """
        out = self._layout([parts], ys_pad, ys_lens)
        if ys_pad is not None:
            out["labels"] = self._labels(ys_pad, ys_lens)
        return out

    def _pieces(
        self,
        parts: Sequence[PromptPart],
        ys_pad: Optional[torch.Tensor],
        ys_lens: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One scale's inputs in prompt order, not yet packed: BOS, each
        modality's tokens between its markers, the prompt and (if given) the
        target. Returns embeddings (B, P, D) and their validity (B, P)."""
        modalities = tuple(m for m, _, _ in parts)
        if modalities not in self._prompt_ids:
            raise ValueError(f"No prompt for modalities {modalities}")
        device = parts[0][1].device
        dtype = self.model.get_input_embeddings().weight.dtype
        bsz = parts[0][1].size(0)

        def fixed(rows: torch.Tensor):
            return rows.to(dtype).expand(bsz, -1, -1), torch.ones(
                bsz, rows.size(0), dtype=torch.bool, device=device
            )

        def ragged(embeds: torch.Tensor, lens: torch.Tensor):
            steps = torch.arange(embeds.size(1), device=device)
            return embeds.to(dtype), steps[None] < lens.to(device)[:, None]

        inputs = [fixed(self._embed_ids([self.tokenizer.bos_token_id], device))]
        for modality, embeds, lens in parts:
            open_name, close_name = MARKERS[modality]
            inputs += [
                fixed(self._marker(open_name, device)),
                ragged(embeds, lens),
                fixed(self._marker(close_name, device)),
            ]
        inputs.append(fixed(self._embed_ids(self._prompt_ids[modalities], device)))
        if ys_pad is not None:
            inputs.append(ragged(self._embed_ids(ys_pad.clamp(min=0), device), ys_lens))
        return torch.cat([e for e, _ in inputs], 1), torch.cat([v for _, v in inputs], 1)

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
        pieces = [self._pieces(parts, ys_pad, ys_lens) for parts in per_scale]
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

    def forward(self, parts: Sequence[PromptPart], ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> LossAcc:
        return self.forward_scales([parts], ys_pad, ys_lens)[0]

    def forward_scales(self, per_scale: PerScale, ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> List[LossAcc]:
        """(loss, accuracy) of each scale's parts, all scales' N x B rows
        in ``length_buckets`` passes instead of N, which pays off where
        per-pass overhead dominates (small LLMs, CPUs). Only valid when
        every scale uses the same adapters."""
        inputs = self._layout(per_scale, ys_pad, ys_lens)
        labels = self._labels(ys_pad, ys_lens).repeat(len(per_scale), 1)
        logits = self._bucketed_logits(inputs, labels.size(1))
        out = []
        for logit, label in zip(logits.chunk(len(per_scale)), labels.chunk(len(per_scale))):
            loss = torch.nn.functional.cross_entropy(
                logit.float().flatten(0, 1), label.flatten(), ignore_index=IGNORE_ID
            )
            scored = label != IGNORE_ID
            correct = (logit.argmax(-1) == label) & scored
            out.append((loss, correct.sum() / scored.sum()))
        return out

    def _bucketed_logits(self, inputs: Dict[str, torch.Tensor], keep: int) -> torch.Tensor:
        """Logits (R, keep, V) of the last ``keep`` positions of R packed
        rows. Rows go through the LLM in ``length_buckets`` groups of similar
        length: rows end at the last column (left padding), so a group of
        short rows drops its leading all-padding columns, and the ASR rows
        of a step no longer pay for the width of its longest AVSR row."""
        mask = inputs["attention_mask"]
        order = mask.sum(1).argsort()
        groups = order.tensor_split(min(self.length_buckets, order.numel()))
        logits = []
        with self.autocast_context(mask.device):
            for rows in groups:
                width = max(int(mask[rows].sum(1).max()), keep)
                logits.append(self.model(
                    **{name: value[rows, -width:] for name, value in inputs.items()},
                    logits_to_keep=keep,
                ).logits)
        return torch.cat(logits)[order.argsort()]

    @torch.no_grad()
    def generate(
        self, parts: Sequence[PromptPart], beam_size: int = 15, max_new_tokens: int = 32
    ) -> Tuple[List[str], torch.Tensor]:
        """Beam search through transformers' ``generate``: B transcripts and
        their scores (B,), the mean log-probability of the transcript's
        tokens and end token. The prefix (all
        but the prompt's last token) is run once per utterance and its KV
        cache copied to the beams: ``generate`` given the embeddings would
        run it once per beam, which on a CPU was half of the decoding time
        at beam 4. ``generate`` then starts from the prompt's last token,
        given by id; the other ids it receives are placeholders for
        positions the cache already holds."""
        inputs = self.build_inputs(parts)
        embeds, mask = inputs["inputs_embeds"], inputs["attention_mask"]
        modalities = tuple(m for m, _, _ in parts)
        ids = torch.full(mask.shape, self.tokenizer.pad_token_id, dtype=torch.long, device=mask.device)
        ids[:, -1] = self._prompt_ids[modalities][-1]
        with self.autocast_context(embeds.device):
            cache = self.model(
                inputs_embeds=embeds[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=inputs["position_ids"][:, :-1],
                use_cache=True,
                logits_to_keep=1,
            ).cache
            cache.batch_repeat_interleave(beam_size)
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                cache=cache,
                num_beams=beam_size,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=self.tokenizer.eos_token_id,
                pad_token_id=self.tokenizer.pad_token_id,
                bos_token_id=self.tokenizer.bos_token_id,
                return_dict_in_generate=True,
                output_scores=True,
            )
            steps = self.model.compute_transition_scores(
                out.sequences, out.scores, out.get("beam_indices"), normalize_logits=beam_size == 1
            ).float()
        new = out.sequences[:, ids.size(1) :]
        # Up to the first end token: what follows is padding.
        eos = (new == self.tokenizer.eos_token_id).long()
        counted = (eos.cumsum(1) - eos) == 0
        scores = (steps * counted).sum(1) / counted.sum(1).clamp(min=1)
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [t.strip() for t in texts], scores
