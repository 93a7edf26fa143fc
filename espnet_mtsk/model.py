"""The Matryoshka audio-visual LLM as an ESPnet model.

One step: each encoder runs once; every (modality, rate) of the Matryoshka set
compresses and projects that same output once; each scale then feeds its
tokens to the LLM with its own LoRA adapters active; the loss is the mean of
the per-scale losses.
"""

import contextlib
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel
from typeguard import typechecked

from espnet_mtsk.compress import AbsCompressor
from espnet_mtsk.data.encoded import encoded_name
from espnet_mtsk.llm.abs_llm import AbsLLM, PromptPart
from espnet_mtsk.llm.lora import LoRAStrategy
from espnet_mtsk.projector import ProjectorBank
from espnet_mtsk.scales import MODES, Scale, matryoshka_scales, parse_scale, projector_keys

Encoded = Dict[str, Tuple[torch.Tensor, torch.Tensor]]
# Each modality's input in a batch.
DATA_NAMES = {"audio": "speech", "video": "video"}


def audio_features(
    frontend: Optional[AbsFrontend],
    normalize: Optional[AbsNormalize],
    speech: torch.Tensor,
    lengths: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (B, S) -> the audio encoder's input (B, T, F), as ESPnet's
    ASR model does: frontend, then normalisation (each optional)."""
    if frontend is not None:
        speech, lengths = frontend(speech, lengths)
    if normalize is not None:
        speech, lengths = normalize(speech, lengths)
    return speech, lengths


class ESPnetMTSKModel(AbsESPnetModel):
    """Llama-MTSK: speech (B, S) and/or video (B, T, H, W) + text ids (B, L).

    ``forward`` returns (loss, stats, batch size) with stats ``loss``, ``acc``
    and ``loss_<scale>``, ``acc_<scale>`` for every scale (e.g. ``a4_v2``).
    ``recognize`` decodes a batch at one chosen scale.

    Args:
        mode: "asr", "vsr" or "avsr": which modalities the LLM reads;
            "all": the three sets of scales in one model.
        audio_rates / video_rates: compression rates of the Matryoshka set.
        projector_hidden_size: hidden width of every projector's MLP.
        scales_per_step: K < number of scales trains K of them per training
            batch, drawn without replacement from a permutation of all
            scales that is redrawn (from ``scale_seed`` and the cycle's
            index) once every scale has had its turn: each scale is drawn
            equally often, so the expected loss is the mean over all scales.
            None: every scale every step (the paper). Validation always
            scores every scale.
        scale_seed: seed of those draws.
    """

    @typechecked
    def __init__(
        self,
        llm: AbsLLM,
        compressor: AbsCompressor,
        lora: LoRAStrategy,
        audio_encoder: Optional[AbsEncoder] = None,
        video_encoder: Optional[AbsEncoder] = None,
        frontend: Optional[AbsFrontend] = None,
        normalize: Optional[AbsNormalize] = None,
        mode: str = "avsr",
        audio_rates: Sequence[int] = (4, 16),
        video_rates: Sequence[int] = (2, 5),
        projector_hidden_size: int = 2048,
        scales_per_step: Optional[int] = None,
        scale_seed: int = 0,
    ):
        super().__init__()
        self.mode = mode
        self.scales: List[Scale] = matryoshka_scales(mode, audio_rates, video_rates)
        self.encoders = torch.nn.ModuleDict()
        for modality, encoder in (("audio", audio_encoder), ("video", video_encoder)):
            if modality in MODES[mode]:
                if encoder is None:
                    raise ValueError(f"mode '{mode}' needs a {modality}_encoder")
                self.encoders[modality] = encoder
        self.frontend = frontend
        self.normalize = normalize
        self.compressor = compressor
        self.llm = llm
        sizes = {
            key: compressor.output_size(self.encoders[m].output_size(), rate)
            for key, (m, rate) in projector_keys(self.scales).items()
        }
        self.projectors = ProjectorBank(sizes, llm.hidden_size(), projector_hidden_size)
        self.lora = lora
        llm.model = lora.wrap(llm.model, [s.id for s in self.scales])
        # Shared adapters give every scale the same weights, so the scales
        # can run as one padded LLM batch (bench/train_step.py times both).
        self.one_pass = lora.shared(self.scale_ids)
        if scales_per_step is not None and not 1 <= scales_per_step <= len(self.scales):
            raise ValueError(
                f"model_conf.scales_per_step must be 1..{len(self.scales)} "
                f"(the model's scales {self.scale_ids}), got {scales_per_step}"
            )
        self.scales_per_step = scales_per_step or len(self.scales)
        self.scale_seed = scale_seed
        if self.scales_per_step < len(self.scales):
            # Saved with the checkpoints, so a resumed training continues the
            # sequence of draws instead of starting it again.
            self.register_buffer("scale_draws", torch.zeros((), dtype=torch.long))

    @property
    def scale_ids(self) -> List[str]:
        return [s.id for s in self.scales]

    def scale(self, scale_id: str) -> Scale:
        """The trained scale with this id; a clear error for any other."""
        scale = parse_scale(scale_id)
        if scale not in self.scales:
            raise ValueError(
                f"Unknown scale '{scale_id}': this model was trained on "
                f"{self.scale_ids}"
            )
        return scale

    def step_scales(self) -> List[Scale]:
        """The scales this training step trains (see ``scales_per_step``);
        every scale outside training."""
        n, k = len(self.scales), self.scales_per_step
        if k == n or not self.training:
            return self.scales
        cycle, group = divmod(int(self.scale_draws), math.ceil(n / k))
        self.scale_draws += 1
        order = np.random.default_rng([self.scale_seed, cycle]).permutation(n)
        return [self.scales[i] for i in sorted(order[group * k : (group + 1) * k])]

    def encode(
        self,
        speech: Optional[torch.Tensor] = None,
        speech_lengths: Optional[torch.Tensor] = None,
        video: Optional[torch.Tensor] = None,
        video_lengths: Optional[torch.Tensor] = None,
        modalities: Optional[Sequence[str]] = None,
        precomputed: Optional[Encoded] = None,
    ) -> Encoded:
        """Runs each needed encoder once: {modality: ((B, T, D), (B,))}.

        ``modalities`` defaults to every modality of the mode; those in
        ``precomputed`` (a frozen encoder's dumped outputs, see
        ``espnet_mtsk.data.encoded``) are taken as they are.
        """
        inputs = {"audio": (speech, speech_lengths), "video": (video, video_lengths)}
        encoded = {}
        for modality in modalities or list(self.encoders):
            if precomputed and modality in precomputed:
                encoded[modality] = precomputed[modality]
                continue
            encoder = self.encoders[modality]
            xs, lens = inputs[modality]
            if xs is None:
                raise ValueError(
                    f"mode '{self.mode}' needs '{DATA_NAMES[modality]}' in the batch"
                )
            if modality == "audio":
                xs, lens = audio_features(self.frontend, self.normalize, xs, lens)
            frozen = not any(p.requires_grad for p in encoder.parameters())
            if frozen:
                # A frozen encoder keeps its normalisation statistics too.
                encoder.eval()
            with torch.no_grad() if frozen else contextlib.nullcontext():
                hs, hlens, _ = encoder(xs, lens)
            encoded[modality] = (hs, hlens)
        return encoded

    def prompt_parts(self, encoded: Encoded, scale: Scale, cache: Dict) -> List[PromptPart]:
        """The LLM-ready tokens of one scale; (modality, rate) work is shared."""
        out = []
        for (modality, rate), key in zip(scale.rates, scale.keys().values()):
            if key not in cache:
                hs, hlens = encoded[modality]
                tokens, tlens = self.compressor(hs, hlens, rate)
                cache[key] = (modality, self.projectors[key](tokens), tlens)
            out.append(cache[key])
        return out

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        speech: Optional[torch.Tensor] = None,
        speech_lengths: Optional[torch.Tensor] = None,
        video: Optional[torch.Tensor] = None,
        video_lengths: Optional[torch.Tensor] = None,
        encoded: Optional[Encoded] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        # ``encoded`` (from ``encode``) skips the encoders, so that their
        # share of a step can be timed apart (bench/train_step.py); dumped
        # encoder outputs in the batch (``speech_encoded``) skip theirs.
        precomputed = dict(encoded or {})
        for modality in self.encoders:
            name = encoded_name(modality)
            if name in kwargs:
                precomputed[modality] = (kwargs[name], kwargs[f"{name}_lengths"])
        scales = self.step_scales()
        modalities = sorted({m for s in scales for m in s.modalities})
        encoded = self.encode(
            speech, speech_lengths, video, video_lengths, modalities, precomputed=precomputed
        )
        cache: Dict = {}
        if self.one_pass:
            self.lora.activate(self.llm.model, scales[0].id)
            results = self.llm.forward_scales(
                [self.prompt_parts(encoded, s, cache) for s in scales], text, text_lengths
            )
        else:
            results = []
            for scale in scales:
                self.lora.activate(self.llm.model, scale.id)
                results.append(self.llm(self.prompt_parts(encoded, scale, cache), text, text_lengths))
        stats = {}
        losses, accs = [], []
        for scale, (loss, acc) in zip(scales, results):
            stats[f"loss_{scale.id}"] = loss.detach()
            stats[f"acc_{scale.id}"] = acc.detach()
            losses.append(loss)
            accs.append(acc)
        loss = torch.stack(losses).mean()
        stats["loss"] = loss.detach()
        stats["acc"] = torch.stack(accs).mean().detach()
        # The weight is what the loss averages over: the target tokens, each
        # transcript's and its end token. ESPnet's distributed trainer
        # weights every rank's loss by it, so ranks that split a batch
        # train on the mean over the whole batch's tokens, as one process
        # does. ESPnet's data-parallel path gathers 1-d tensors from every
        # device.
        tokens = text_lengths.sum() + text.size(0)
        return force_gatherable((loss, stats, tokens), loss.device)

    def collect_feats(self, **kwargs) -> Dict[str, torch.Tensor]:
        # Encoders take raw inputs: there are no features to normalise.
        return {}

    @torch.no_grad()
    def recognize(
        self,
        scale_id: str,
        speech: Optional[torch.Tensor] = None,
        speech_lengths: Optional[torch.Tensor] = None,
        video: Optional[torch.Tensor] = None,
        video_lengths: Optional[torch.Tensor] = None,
        beam_size: int = 15,
        max_new_tokens: int = 32,
        encoded: Optional[Encoded] = None,
    ) -> "Hypotheses":
        """Transcribes a batch at one scale of the Matryoshka set.

        ``encoded`` (from ``encode``) lets several scales share one encoder
        pass; without it the inputs are encoded here.
        """
        scale = self.scale(scale_id)
        if encoded is None:
            encoded = self.encode(
                speech, speech_lengths, video, video_lengths, scale.modalities
            )
        self.lora.activate(self.llm.model, scale.id)
        parts = self.prompt_parts(encoded, scale, {})
        texts, scores = self.llm.generate(parts, beam_size, max_new_tokens)
        return Hypotheses(texts, sum(lens for _, _, lens in parts), scores)


class Hypotheses(NamedTuple):
    """One scale's decoding of a batch: the B transcripts, the audio-visual
    tokens (B,) the LLM read for each (the scale's cost) and each
    transcript's score (B,), its mean log-probability per token."""

    texts: List[str]
    num_tokens: torch.Tensor
    scores: torch.Tensor
