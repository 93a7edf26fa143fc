"""``AVSR2Text``: a trained Llama-MTSK model as a transcriber of speech
and/or mouth video, at one scale, a scale chosen within a budget
(``budget``) or per utterance by the fitted policy (``policy``); each
encoder run once per batch whatever the scales decoded from it.

``espnet_mtsk.bin.avsr_inference`` (the ESPnet-style CLI) re-exports it, so
``from espnet_mtsk.bin.avsr_inference import AVSR2Text`` keeps working, as
``Speech2Text`` does in ESPnet.
"""

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet2.torch_utils.device_funcs import to_device
from typeguard import typechecked

from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.decoding.budget import choose_scale, read_scale_table
from espnet_mtsk.decoding.policy import POLICY_FILE, AdaptivePolicy, pooled_states, run_choices
from espnet_mtsk.decoding.scale_request import AUTO, ScaleRequest
from espnet_mtsk.llm.precision import autocast_dtype
from espnet_mtsk.model import DATA_NAMES
from espnet_mtsk.scales import reads_only
from espnet_mtsk.tasks.avsr import AVSRTask


@dataclass
class Decoded:
    """One scale's, or the adaptive policy's, decoding of a batch of B.

    ``num_tokens``: the audio-visual tokens the LLM read per utterance over
    every pass; ``passes``: the scales each utterance was decoded at, in
    order (one, or two for a cascade); ``seconds``: the wall time of the
    encoders, the policy's estimate and the LLM passes; ``estimator_seconds``:
    the estimate's share (the audio encoder and the posterior).
    """

    texts: List[str]
    num_tokens: List[int]
    scores: List[float]
    passes: List[List[str]]
    seconds: float
    estimator_seconds: float = 0.0


class AVSR2Text:
    """Transcribes speech (S,) and/or mouth video (T, H, W) at one scale.

    Examples:
        >>> avsr = AVSR2Text("exp/x/config.yaml", "exp/x/valid.acc.ave.pth", scale="a4_v2")
        >>> avsr(speech=wave, video=frames)
        'bin blue at f two now'

    ``pretrained_dirs`` ({config option: path}) says where a pretrained
    folder of the config is on this machine, and
    ``accept_pretrained_changes`` lets through one whose weights differ from
    those the training started from (see ``AVSRTask.build_model_from_file``);
    ``av_tolerance`` replaces the largest audio/video duration gap the
    training config accepts.
    """

    @typechecked
    def __init__(
        self,
        asr_train_config: Optional[str] = None,
        asr_model_file: Optional[str] = None,
        scale: Optional[str] = None,
        device: str = "cpu",
        beam_size: int = 15,
        max_new_tokens: int = 32,
        amp: bool = False,
        budget_tokens_per_sec: Optional[float] = None,
        budget_rtf: Optional[float] = None,
        scale_table: Optional[str] = None,
        policy_file: Optional[str] = None,
        pretrained_dirs: Optional[Dict[str, str]] = None,
        av_tolerance: Optional[float] = None,
        accept_pretrained_changes: bool = False,
    ):
        model, train_args = AVSRTask.build_model_from_file(
            asr_train_config, asr_model_file, device, pretrained_dirs, accept_pretrained_changes
        )
        self.model = model.eval()
        if av_tolerance is not None:
            train_args.av_tolerance = av_tolerance
        self.train_args = train_args
        self.preprocess = AVSRTask.build_preprocess_fn(train_args, False)
        self._collate = AVSRCollateFn()
        self.budget_tokens_per_sec = budget_tokens_per_sec
        self.budget_rtf = budget_rtf
        self.scale_table = scale_table
        if scale_table is None and asr_model_file is not None:
            self.scale_table = str(Path(asr_model_file).parent / "scale_table.json")
        self.policy_file = policy_file
        if policy_file is None and asr_model_file is not None:
            self.policy_file = str(Path(asr_model_file).parent / POLICY_FILE)
        self._policy: Optional[AdaptivePolicy] = None
        self.device = device
        self.beam_size = beam_size
        self.max_new_tokens = max_new_tokens
        self.amp = amp
        self.scale = self.resolve_scale(scale)

    def decoding_settings(self) -> Dict[str, Any]:
        """What decoding choices a transcript depends on: the beam, the new
        tokens allowed, and the dtype of the LLM's matrix products."""
        dtype = torch.bfloat16 if self.amp else autocast_dtype(
            self.model.llm.autocast, torch.device(self.device))
        return dict(beam_size=self.beam_size, max_new_tokens=self.max_new_tokens,
                    precision=str(dtype or torch.float32).replace("torch.", ""))

    def resolve_scale(
        self, scale: Optional[str], modalities: Sequence[str] = ("audio", "video"), name: str = ""
    ) -> str:
        """The scale id to decode with when only ``modalities`` are at hand
        (e.g. a video without sound track, ``name``): ``scale`` itself, the
        model's first usable scale for None, the budget's choice for
        "auto". An AVSR scale falls back to the VSR scale of the same video
        rate when the audio is missing and the model has that scale. The
        adaptive policy stays itself (``adaptive@<budget>`` with
        ``budget_tokens_per_sec``): it chooses per utterance."""
        request = ScaleRequest.parse(scale)
        usable = [s for s in self.model.scales if reads_only(s.modalities, modalities)]
        if not usable:
            raise ValueError(f"{name or 'input'}: no scale of {self.model.scale_ids} works with {list(modalities)} only")
        if request.adaptive:
            if self.budget_rtf is not None:
                raise ValueError(
                    "--budget_rtf does not apply to --scale adaptive: its operating points are "
                    "fitted in tokens per second; give --budget_tokens_per_sec (or adaptive@<tokens/s>)"
                )
            if request.budget is None:
                request = ScaleRequest.policy(self.budget_tokens_per_sec)
            self.policy.point(request.budget)
            if not self.policy.usable(modalities).any():
                raise ValueError(
                    f"{name or 'input'}: no scale of the policy ({self.policy.scales}) works with "
                    f"{list(modalities)} only"
                )
            return str(request)
        if request.kind == AUTO:
            if self.scale_table is None:
                raise ValueError("--scale auto needs --scale_table or --asr_model_file")
            return choose_scale(
                read_scale_table(Path(self.scale_table)),
                self.budget_tokens_per_sec,
                self.budget_rtf,
                allowed=[s.id for s in usable],
            ).scale
        if request.scale_id is None:
            return usable[0].id
        chosen = self.model.scale(request.scale_id)
        if chosen in usable:
            return chosen.id
        fallback = [s for s in usable if s.rates == tuple(r for r in chosen.rates if r[0] in modalities)]
        if not fallback:
            raise ValueError(f"{name or 'input'}: scale {scale} needs {list(chosen.modalities)}, got {list(modalities)} only")
        logging.info(f"{name}: no {set(chosen.modalities) - set(modalities)}: decoding at {fallback[0].id} instead of {scale}")
        return fallback[0].id

    @property
    def policy(self) -> AdaptivePolicy:
        """The fitted per-utterance policy (``policy_file``)."""
        if self._policy is None:
            if self.policy_file is None:
                raise ValueError("--scale adaptive needs --policy_file or --asr_model_file")
            self._policy = AdaptivePolicy.load(Path(self.policy_file))
            unknown = sorted(set(self._policy.scales) - set(self.model.scale_ids))
            if unknown:
                raise ValueError(f"{self.policy_file}: scales {unknown} are not the model's {self.model.scale_ids}")
            now = self.decoding_settings()
            differ = {k: v for k, v in self._policy.decoding.items() if now.get(k) != v}
            if differ:
                logging.warning(
                    f"{self.policy_file}: fitted on decodings with "
                    + ", ".join(f"{k} {v}" for k, v in differ.items())
                    + "; this decoding uses " + ", ".join(f"{k} {now[k]}" for k in differ)
                    + ": the policy's expected WERs and cascade thresholds may not hold"
                )
        return self._policy

    def modalities_of(self, scale_id: str) -> List[str]:
        """What a scale reads; for the policy, what any of its scales reads."""
        if ScaleRequest.parse(scale_id).adaptive:
            return sorted({m for ms in self.policy.modalities for m in ms})
        return list(self.model.scale(scale_id).modalities)

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    @torch.no_grad()
    def decode_batch(self, batch: Dict[str, torch.Tensor]) -> Tuple[List[str], List[int]]:
        """A collated batch (``speech``, ``video`` and their ``_lengths``) ->
        B transcripts and the number of audio-visual tokens the LLM read."""
        decoded = self.decode_scales(batch, [self.scale])[self.scale]
        return decoded.texts, decoded.num_tokens

    @torch.no_grad()
    def decode_scales(self, batch: Dict[str, torch.Tensor], scales: Sequence[str]) -> Dict[str, Decoded]:
        """Decodes one batch at several scales and/or adaptive policies
        (``adaptive@<budget>``), running each encoder, and the policy's
        estimate, at most once. Each ``Decoded.seconds`` is what that scale
        (or policy) alone costs: the encoders it read, the estimate, its own
        LLM passes."""
        encodings = _Encodings(self, to_device(batch, self.device))
        requests = {text: ScaleRequest.parse(text) for text in scales}
        fixed = [self.model.scale(text) for text, r in requests.items() if not r.adaptive]
        out = {}
        for scale in fixed:
            encodings.need(scale.modalities)
            start = self._clock()
            hyps = self._recognize(scale.id, encodings.encoded)
            seconds = self._clock() - start + encodings.seconds_of(scale.modalities)
            out[scale.id] = Decoded(hyps.texts, hyps.num_tokens.tolist(), hyps.scores.tolist(),
                                    [[scale.id] for _ in hyps.texts], seconds)
        policies = {text: r for text, r in requests.items() if r.adaptive}
        if policies:
            posterior, estimator_seconds = self._estimate(encodings)
            for text, request in policies.items():
                out[text] = self._decode_adaptive(encodings, posterior, estimator_seconds, request.budget)
        return out

    @torch.no_grad()
    def pooled_audio(self, batch: Dict[str, torch.Tensor]) -> np.ndarray:
        """A collated batch's pooled audio encoder states (B, 2 D): the
        policy's features, computed as decoding computes them."""
        return _Encodings(self, to_device(batch, self.device)).pooled_audio()

    def _recognize(self, scale_id: str, encoded, index: Optional[List[int]] = None):
        if index is not None:
            encoded = {m: (hs[index], lens[index]) for m, (hs, lens) in encoded.items()}
        with self._autocast():
            return self.model.recognize(
                scale_id, beam_size=self.beam_size, max_new_tokens=self.max_new_tokens, encoded=encoded
            )

    def _estimate(self, encodings: "_Encodings") -> Tuple[np.ndarray, float]:
        """The policy's condition posterior (B, C) and what it cost: the
        audio encoder's time and its own."""
        if "audio" not in encodings.present:
            return self.policy.posterior(None, encodings.size), 0.0
        encodings.need(["audio"])
        start = self._clock()
        posterior = self.policy.posterior(encodings.pooled_audio())
        return posterior, self._clock() - start + encodings.seconds_of(["audio"])

    def _decode_adaptive(
        self, encodings: "_Encodings", posterior: np.ndarray, estimator_seconds: float, budget: Optional[float]
    ) -> Decoded:
        """The policy's choice per utterance, each chosen scale's utterances
        decoded together; a cascade's second pass for those whose first
        transcript scored below its threshold. An encoder runs only when a
        chosen scale reads its modality."""
        choices = self.policy.choose(posterior, self.policy.point(budget), encodings.present)
        size = encodings.size
        texts, tokens, scores = [""] * size, [0] * size, [0.0] * size
        llm_seconds = 0.0

        def decode(scale_id: str, index: List[int]) -> List[float]:
            nonlocal llm_seconds
            encodings.need(self.model.scale(scale_id).modalities)
            start = self._clock()
            hyps = self._recognize(scale_id, encodings.encoded, index)
            llm_seconds += self._clock() - start
            got = hyps.scores.tolist()
            for i, text, n, score in zip(index, hyps.texts, hyps.num_tokens.tolist(), got):
                texts[i], scores[i] = text, score
                tokens[i] += n
            return got

        passes = run_choices(choices, decode)
        read = {m for p in passes for s in p for m in self.model.scale(s).modalities} - {"audio"}
        # The estimate holds the audio encoder's time already.
        seconds = estimator_seconds + encodings.seconds_of(sorted(read)) + llm_seconds
        return Decoded(texts, tokens, scores, passes, seconds, estimator_seconds)

    def _clock(self) -> float:
        # CUDA runs asynchronously: wait for it so the time is the work's.
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def batch(self, items: Sequence[Tuple[str, Dict[str, np.ndarray]]]) -> Dict[str, torch.Tensor]:
        """Utterances [(uid, {"speech": (S,) and/or "video": (T, H, W)})] ->
        a padded batch, through the same checks and video crop as decoding
        from data files (errors name the uid)."""
        data = [
            (uid, self.preprocess(uid, {k: np.asarray(v, dtype=np.float32) for k, v in inputs.items()}))
            for uid, inputs in items
        ]
        return self._collate(data)[1]

    def single_batch(self, uid: str, **inputs: Optional[np.ndarray]) -> Dict[str, torch.Tensor]:
        """One utterance's ``speech`` (S,) and/or ``video`` (T, H, W) -> a
        batch of one (``batch``)."""
        return self.batch([(uid, {k: v for k, v in inputs.items() if v is not None})])

    def __call__(
        self,
        speech: Optional[np.ndarray] = None,
        video: Optional[np.ndarray] = None,
    ) -> str:
        return self.decode_batch(self.single_batch("input", speech=speech, video=video))[0][0]

    @staticmethod
    def from_pretrained(model_tag: Optional[str] = None, **kwargs: Any) -> "AVSR2Text":
        """A packed model (espnet_model_zoo tag, URL or local zip) or files;
        the pretrained folders it references are found as
        ``AVSRTask.build_model_from_file`` says."""
        if model_tag is not None:
            from espnet_model_zoo.downloader import ModelDownloader

            kwargs.update(**ModelDownloader().download_and_unpack(model_tag))
        return AVSR2Text(**kwargs)


class _Encodings:
    """A batch's encoder outputs, each encoder run (and timed) once, when
    first needed."""

    def __init__(self, avsr: AVSR2Text, batch: Dict[str, Any]):
        self.avsr = avsr
        self.inputs = {k: batch.get(k) for k in ("speech", "speech_lengths", "video", "video_lengths")}
        self.present = [m for m, key in DATA_NAMES.items() if self.inputs[key] is not None]
        self.size = len(self.inputs["speech_lengths" if "audio" in self.present else "video_lengths"])
        self.encoded: Dict[str, Any] = {}
        self.seconds: Dict[str, float] = {}

    def need(self, modalities: Sequence[str]) -> None:
        for modality in modalities:
            if modality not in self.encoded:
                start = self.avsr._clock()
                with self.avsr._autocast():
                    self.encoded.update(self.avsr.model.encode(**self.inputs, modalities=[modality]))
                self.seconds[modality] = self.avsr._clock() - start

    def pooled_audio(self) -> np.ndarray:
        """The pooled audio encoder states (B, 2 D), the policy's features."""
        self.need(["audio"])
        return pooled_states(*self.encoded["audio"])

    def seconds_of(self, modalities: Sequence[str]) -> float:
        return sum(self.seconds[m] for m in modalities)
