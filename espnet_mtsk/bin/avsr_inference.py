#!/usr/bin/env python3
"""Decode with a trained Llama-MTSK model at one chosen scale.

Python API: ``AVSR2Text`` (``AVSR2Text.from_pretrained(model_tag)`` for a
packed model); CLI: ESPnet's ``asr_inference`` flags plus ``--scale``. The
1-best transcripts go to ``<output_dir>/1best_recog/text``. ``--scale auto``
with ``--budget_tokens_per_sec`` and/or ``--budget_rtf`` picks the most
accurate scale within the budget from the model's measured scale table;
``--scale adaptive`` (``adaptive@<tokens/s>`` for a budget) chooses a scale per
utterance with the model's fitted policy (``espnet_mtsk.policy``).
"""

import argparse
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none
from typeguard import typechecked

from espnet_mtsk.budget import choose_scale, read_scale_table
from espnet_mtsk.cli import key_value
from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS
from espnet_mtsk.llm.causal_lm import autocast_dtype
from espnet_mtsk.model import DATA_NAMES
from espnet_mtsk.policy import DECODING_FILE, POLICY_FILE, AdaptivePolicy, adaptive_budget, adaptive_id, is_adaptive, pooled_states
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
        usable = [s for s in self.model.scales if set(s.modalities) <= set(modalities)]
        if not usable:
            raise ValueError(f"{name or 'input'}: no scale of {self.model.scale_ids} works with {list(modalities)} only")
        if scale is None:
            return usable[0].id
        if is_adaptive(scale):
            if self.budget_rtf is not None:
                raise ValueError(
                    "--budget_rtf does not apply to --scale adaptive: its operating points are "
                    "fitted in tokens per second; give --budget_tokens_per_sec (or adaptive@<tokens/s>)"
                )
            budget = adaptive_budget(scale)
            scale = adaptive_id(budget if budget is not None else self.budget_tokens_per_sec)
            self.policy.point(adaptive_budget(scale))
            if not self.policy.usable(modalities).any():
                raise ValueError(
                    f"{name or 'input'}: no scale of the policy ({self.policy.scales}) works with "
                    f"{list(modalities)} only"
                )
            return scale
        if scale == "auto":
            if self.scale_table is None:
                raise ValueError("--scale auto needs --scale_table or --asr_model_file")
            return choose_scale(
                read_scale_table(Path(self.scale_table)),
                self.budget_tokens_per_sec,
                self.budget_rtf,
                allowed=[s.id for s in usable],
            ).scale
        chosen = self.model.scale(scale)
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
        if is_adaptive(scale_id):
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
        batch = to_device(batch, self.device)
        encodings = _Encodings(self, {k: batch.get(k) for k in ("speech", "speech_lengths", "video", "video_lengths")})
        fixed = [self.model.scale(s) for s in scales if not is_adaptive(s)]
        out = {}
        for scale in fixed:
            encodings.need(scale.modalities)
            start = self._clock()
            hyps = self._recognize(scale.id, encodings.encoded)
            seconds = self._clock() - start + encodings.seconds_of(scale.modalities)
            out[scale.id] = Decoded(hyps.texts, hyps.num_tokens.tolist(), hyps.scores.tolist(),
                                    [[scale.id] for _ in hyps.texts], seconds)
        policies = [s for s in scales if is_adaptive(s)]
        if policies:
            posterior, estimator_seconds = self._estimate(encodings)
            for policy_id in policies:
                out[policy_id] = self._decode_adaptive(encodings, posterior, estimator_seconds, policy_id)
        return out

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
        posterior = self.policy.posterior(pooled_states(*encodings.encoded["audio"]))
        return posterior, self._clock() - start + encodings.seconds_of(["audio"])

    def _decode_adaptive(
        self, encodings: "_Encodings", posterior: np.ndarray, estimator_seconds: float, policy_id: str
    ) -> Decoded:
        """The policy's choice per utterance, each chosen scale's utterances
        decoded together; a cascade's second pass for those whose first
        transcript scored below its threshold. An encoder runs only when a
        chosen scale reads its modality."""
        choices = self.policy.choose(posterior, self.policy.point(adaptive_budget(policy_id)), encodings.present)
        size = encodings.size
        texts, tokens, scores = [""] * size, [0] * size, [0.0] * size
        passes: List[List[str]] = [[] for _ in range(size)]
        llm_seconds = 0.0
        todo = {i: choices[i].first for i in range(size)}
        while todo:
            by_scale: Dict[str, List[int]] = {}
            for i, scale_id in todo.items():
                by_scale.setdefault(scale_id, []).append(i)
            todo = {}
            for scale_id, index in by_scale.items():
                encodings.need(self.model.scale(scale_id).modalities)
                start = self._clock()
                hyps = self._recognize(scale_id, encodings.encoded, index)
                llm_seconds += self._clock() - start
                for i, text, n, score in zip(index, hyps.texts, hyps.num_tokens.tolist(), hyps.scores.tolist()):
                    texts[i], scores[i] = text, score
                    tokens[i] += n
                    passes[i].append(scale_id)
                    if len(passes[i]) == 1 and choices[i].needs_second(score):
                        todo[i] = choices[i].second
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

    def __init__(self, avsr: AVSR2Text, inputs: Dict[str, Any]):
        self.avsr, self.inputs = avsr, inputs
        self.present = [m for m, key in DATA_NAMES.items() if inputs[key] is not None]
        self.size = len(inputs["speech_lengths" if "audio" in self.present else "video_lengths"])
        self.encoded: Dict[str, Any] = {}
        self.seconds: Dict[str, float] = {}

    def need(self, modalities: Sequence[str]) -> None:
        for modality in modalities:
            if modality not in self.encoded:
                start = self.avsr._clock()
                with self.avsr._autocast():
                    self.encoded.update(self.avsr.model.encode(**self.inputs, modalities=[modality]))
                self.seconds[modality] = self.avsr._clock() - start

    def seconds_of(self, modalities: Sequence[str]) -> float:
        return sum(self.seconds[m] for m in modalities)


@typechecked
def inference(
    output_dir: str,
    batch_size: int,
    ngpu: int,
    seed: int,
    num_workers: int,
    log_level: str,
    data_path_and_name_and_type: Sequence[Any],
    key_file: Optional[str],
    asr_train_config: Optional[str],
    asr_model_file: Optional[str],
    model_tag: Optional[str],
    scale: Optional[str],
    scales: Optional[Sequence[str]],
    beam_size: int,
    max_new_tokens: int,
    amp: bool,
    budget_tokens_per_sec: Optional[float],
    budget_rtf: Optional[float],
    scale_table: Optional[str],
    policy_file: Optional[str],
    pretrained_dir: Sequence[Tuple[str, str]],
    accept_pretrained_changes: bool,
    allow_variable_data_keys: bool,
):
    logging.basicConfig(
        level=log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    device = "cuda" if ngpu >= 1 else "cpu"
    set_all_random_seed(seed)
    avsr = AVSR2Text.from_pretrained(
        model_tag=model_tag,
        asr_train_config=asr_train_config,
        asr_model_file=asr_model_file,
        scale=scale,
        device=device,
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
        amp=amp,
        budget_tokens_per_sec=budget_tokens_per_sec,
        budget_rtf=budget_rtf,
        scale_table=scale_table,
        policy_file=policy_file,
        pretrained_dirs=dict(pretrained_dir),
        accept_pretrained_changes=accept_pretrained_changes,
    )
    loader = AVSRTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype="float32",
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=AVSRTask.build_preprocess_fn(avsr.train_args, False),
        collate_fn=AVSRTask.build_collate_fn(avsr.train_args, False),
        allow_variable_data_keys=allow_variable_data_keys,
        inference=True,
    )
    # Per utterance and scale: the transcript, the LLM's audio-visual tokens,
    # the speech duration and its share of the batch's wall time at that
    # scale, from which scoring derives tokens per second and the real-time
    # factor. With --scales each scale writes to <output_dir>/<scale>/.
    per_scale = bool(scales)
    scales = [avsr.resolve_scale(s) for s in scales] if per_scale else [avsr.scale]
    logging.info(f"Decoding scales {scales} of {avsr.model.scale_ids}")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / DECODING_FILE).write_text(json.dumps(avsr.decoding_settings()) + "\n")
    with DatadirWriter(output_dir) as writer:
        for keys, batch in loader:
            batch.pop("text", None)
            batch.pop("text_lengths", None)
            seconds = _durations(batch)
            for scale_id, decoded in avsr.decode_scales(batch, scales).items():
                out = (writer[scale_id] if per_scale else writer)["1best_recog"]
                share = 1 / len(keys)
                for i, (key, sec) in enumerate(zip(keys, seconds)):
                    out["text"][key] = decoded.texts[i]
                    out["num_tokens"][key] = str(decoded.num_tokens[i])
                    out["score"][key] = f"{decoded.scores[i]:.4f}"
                    out["speech_seconds"][key] = f"{sec:.3f}"
                    out["decode_seconds"][key] = f"{decoded.seconds * share:.4f}"
                    if is_adaptive(scale_id):
                        out["scale"][key] = ">".join(decoded.passes[i])
                        out["estimator_seconds"][key] = f"{decoded.estimator_seconds * share:.4f}"


def _durations(batch: Dict[str, torch.Tensor]) -> List[float]:
    if "speech_lengths" in batch:
        return (batch["speech_lengths"].float() / SAMPLE_RATE).tolist()
    return (batch["video_lengths"].float() / VIDEO_FPS).tolist()


def get_parser():
    parser = config_argparse.ArgumentParser(
        description="Llama-MTSK decoding at one scale",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--log_level",
        type=lambda x: x.upper(),
        default="INFO",
        choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET"),
    )
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--ngpu", type=int, default=0, help="0: CPU, 1: CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_workers", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument(
        "--amp", type=str2bool, default=False, help="bf16 autocast while decoding"
    )
    group = parser.add_argument_group("Input data related")
    group.add_argument(
        "--data_path_and_name_and_type", type=str2triple_str, required=True, action="append"
    )
    group.add_argument("--key_file", type=str_or_none)
    group.add_argument("--allow_variable_data_keys", type=str2bool, default=False)
    group = parser.add_argument_group("The model configuration related")
    group.add_argument("--asr_train_config", type=str)
    group.add_argument("--asr_model_file", type=str)
    group.add_argument("--model_tag", type=str, help="A packed model: tag, URL or zip")
    add_pretrained_arguments(group)
    group = parser.add_argument_group("Decoding related")
    group.add_argument(
        "--scale", type=str_or_none, default=None,
        help="Scale id such as a4, v2 or a4_v2 (default: the model's first scale); "
        "'auto': the most accurate scale within --budget_tokens_per_sec / --budget_rtf; "
        "'adaptive': a scale per utterance, chosen by the model's fitted policy "
        "within --budget_tokens_per_sec (or 'adaptive@<tokens/s>')",
    )
    group.add_argument(
        "--budget_tokens_per_sec", type=float, default=None,
        help="--scale auto / adaptive: most LLM audio-visual tokens per second of speech",
    )
    group.add_argument(
        "--budget_rtf", type=float, default=None,
        help="--scale auto: highest real-time factor measured on the dev set",
    )
    group.add_argument(
        "--scale_table", type=str_or_none, default=None,
        help="--scale auto: the per-scale dev table of stage 13 "
        "(default: scale_table.json beside --asr_model_file)",
    )
    group.add_argument(
        "--policy_file", type=str_or_none, default=None,
        help="--scale adaptive: the fitted policy (default: policy.json beside --asr_model_file)",
    )
    group.add_argument(
        "--scales", type=str, nargs="+", default=None,
        help="Several scale ids (and adaptive@<tokens/s> policies) decoded together "
        "(encoders run once per batch); each writes <output_dir>/<scale>/1best_recog",
    )
    group.add_argument("--beam_size", type=int, default=15)
    group.add_argument("--max_new_tokens", type=int, default=32)
    return parser


def add_pretrained_arguments(parser) -> None:
    """``--pretrained_dir`` and ``--accept_pretrained_changes``, as every
    decoding command takes them."""
    parser.add_argument(
        "--pretrained_dir", type=key_value, action="append", default=[], metavar="OPTION=PATH",
        help="where a pretrained folder or file of the model's config is on this "
        "machine, e.g. llm_conf.model_dir=/data/Llama-3.2-1B (a packed model "
        "checks it holds the weights it was trained with)",
    )
    parser.add_argument(
        "--accept_pretrained_changes", type=str2bool, default=False,
        help="decode although the weights of a pretrained folder or file differ from "
        "those the training started from (recorded in pretrained_fingerprints.json "
        "beside --asr_model_file)",
    )


def main(cmd=None):
    print(" ".join(sys.argv), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    inference(**kwargs)


if __name__ == "__main__":
    main()
