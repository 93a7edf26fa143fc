#!/usr/bin/env python3
"""Stage 9: the projectors pre-trained with CTC through the LLM's own table.

A projector starts random, so a frozen LLM first sees noise where the
audio-visual tokens go and LoRA must learn the projector's language and the
task at once. Here each projector (one per modality and rate) learns to put
out, for each compressed frame, the LLM's input embedding of the word piece
spoken there: the logits of a frame are the cosine similarities of its
projection with the embedding rows of the transcripts' tokens (frozen, read
from the LLM's table) and with a learnt blank vector, times a learnt scale,
and CTC aligns them to the transcript. No LLM layer runs, so an epoch over
dumped encoder outputs takes seconds. Training then starts from these
projectors (``--init_param``): the LLM reads its own token embeddings, in
order, between the markers.

A coarse rate can have fewer frames than its transcript has tokens (a16 on
Whisper's 50 Hz: 3 frames a second). Its logits are repeated ``upsample``
times along time (by default its rate over its modality's finest rate), so
CTC can read up to that many tokens from one frame, whose projection then
lies between their embeddings. After training each projector's LayerNorm
gain and bias are scaled so that its outputs' mean norm is that of the
embedding rows (the cosine logits do not see the norm; the LLM does).

The checkpoint holds ``projectors.<key>.*`` under the model's own keys, keeps
the epoch with the lowest mean validation token error rate over the
projectors, and is written atomically.
"""

import argparse
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import jiwer
import numpy as np
import torch
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model
from espnet2.train.dataset import ESPnetDataset

from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.fileio import atomic_path
from espnet_mtsk.model import DATA_NAMES, ESPnetMTSKModel
from espnet_mtsk.scales import projector_keys
from espnet_mtsk.tasks.avsr import AVSRTask
from local.encoder_pretrain import add_schedule_arguments, transcript_tokens, warmup_cosine


class EmbeddingCTCHead(torch.nn.Module):
    """Frames (B, T, D) -> CTC log-probabilities (B, T, 1 + K): class 0 is
    the blank, class i the LLM token whose embedding is ``rows[i - 1]``.

    ``rows`` (K, D) are frozen; the blank vector (D,) and the scale are
    learnt. Logits are ``scale * cos(frame, row)``.
    """

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.register_buffer("rows", torch.nn.functional.normalize(rows.float(), dim=-1))
        self.blank = torch.nn.Parameter(rows.float().mean(0))
        self.log_scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        table = torch.cat([torch.nn.functional.normalize(self.blank, dim=-1)[None], self.rows])
        cos = torch.nn.functional.normalize(frames.float(), dim=-1) @ table.T
        return (self.log_scale.exp() * cos).log_softmax(-1)


def upsample_factors(keys: Dict[str, Tuple[str, int]]) -> Dict[str, int]:
    """Each projector key's logit repeat: ceil(its rate / the finest rate of
    its modality), so every rate gets at least the finest rate's frames."""
    finest: Dict[str, int] = {}
    for modality, rate in keys.values():
        finest[modality] = min(rate, finest.get(modality, rate))
    return {key: -(-rate // finest[modality]) for key, (modality, rate) in keys.items()}


def greedy(logp: torch.Tensor, lens: torch.Tensor) -> List[List[int]]:
    """Best CTC path per row of (B, T, C) log-probabilities: repeats
    collapsed, blanks (class 0) dropped; classes, not token ids."""
    out = []
    for seq, n in zip(logp.argmax(-1).tolist(), lens.tolist()):
        out.append([c for i, c in enumerate(seq[:n]) if c != 0 and (i == 0 or seq[i - 1] != c)])
    return out


class ProjectorCTC(torch.nn.Module):
    """A model's compressor and projectors with one ``EmbeddingCTCHead``:
    ``forward(encoded, classes (B, L), lengths (B,))`` -> {key: CTC loss}."""

    def __init__(self, model: ESPnetMTSKModel, tokens: List[int]):
        super().__init__()
        self.compressor = model.compressor
        self.projectors = model.projectors
        self.keys = projector_keys(model.scales)
        self.upsample = upsample_factors(self.keys)
        table = model.llm.model.get_input_embeddings().weight.detach()
        rows = table[torch.tensor(tokens)].float()
        self.head = EmbeddingCTCHead(rows)
        self.row_norm = float(rows.norm(dim=-1).mean())
        to_class = torch.zeros(max(tokens) + 1, dtype=torch.long)
        to_class[torch.tensor(tokens)] = torch.arange(1, len(tokens) + 1)
        self.register_buffer("to_class", to_class, persistent=False)

    def project(self, encoded, key: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """The projector's outputs (B, T', D) and lengths (B,) of one key."""
        modality, rate = self.keys[key]
        hs, hlens = encoded[modality]
        tokens, tlens = self.compressor(hs, hlens, rate)
        return self.projectors[key](tokens), tlens

    def log_probs(self, encoded, key: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Upsampled CTC log-probabilities (B, T' u, C) and lengths."""
        out, lens = self.project(encoded, key)
        u = self.upsample[key]
        return self.head(out).repeat_interleave(u, dim=1), lens * u

    def classes(self, text: torch.Tensor) -> torch.Tensor:
        return self.to_class[text.clamp(min=0, max=self.to_class.numel() - 1)]

    def forward(self, encoded, text: torch.Tensor, text_lengths: torch.Tensor) -> Dict[str, torch.Tensor]:
        targets = self.classes(text)
        losses = {}
        for key in self.keys:
            logp, lens = self.log_probs(encoded, key)
            losses[key] = torch.nn.functional.ctc_loss(
                logp.transpose(0, 1), targets, lens, text_lengths,
                blank=0, reduction="mean", zero_infinity=True,
            )
        return losses

    @torch.no_grad()
    def match_norms(self, batches) -> Dict[str, float]:
        """Scales each projector's LayerNorm so its outputs' mean norm over
        the frames of ``batches`` equals the mean norm of the embedding rows
        the head reads; returns the factor per key."""
        sums = {key: [0.0, 0] for key in self.keys}
        for encoded, _, _ in batches:
            for key in self.keys:
                out, lens = self.project(encoded, key)
                valid = torch.arange(out.size(1))[None] < lens[:, None]
                sums[key][0] += float(out.norm(dim=-1)[valid].sum())
                sums[key][1] += int(valid.sum())
        factors = {}
        for key, (total, count) in sums.items():
            factors[key] = self.row_norm / (total / count)
            norm = self.projectors[key].net[-1]
            norm.weight.mul_(factors[key])
            norm.bias.mul_(factors[key])
        return factors


def _loader(triples: Sequence[str], preprocess, batch_size: int):
    """Batches of ESPnet data triples ``path,name,type`` (a ``text`` among
    them), in a random order per call when given a Random."""
    dataset = ESPnetDataset([tuple(t.split(",")) for t in triples], preprocess=preprocess)
    keys = sorted(dataset.loader_dict["text"].keys())
    collate = AVSRCollateFn()

    def batches(rng=None):
        order = list(keys)
        if rng is not None:
            rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield collate([dataset[k] for k in order[i : i + batch_size]])[1]

    return batches, len(keys)


def _encoded(model: ESPnetMTSKModel, batch: Dict[str, torch.Tensor]):
    """The encoder outputs of a batch: dumped ones as they are, the rest
    through the model's frozen encoders."""
    precomputed = {
        m: (batch[f"{name}_encoded"], batch[f"{name}_encoded_lengths"])
        for m, name in DATA_NAMES.items()
        if f"{name}_encoded" in batch
    }
    raw = {k: v for k, v in batch.items() if not k.startswith("text")}
    with torch.no_grad():
        return model.encode(**{k: raw.get(k) for k in (
            "speech", "speech_lengths", "video", "video_lengths")}, precomputed=precomputed)


def _words(classes: Sequence[int]) -> str:
    return " ".join(f"c{c}" for c in classes)


def token_error_rates(pre: ProjectorCTC, batches) -> Dict[str, float]:
    """Each key's greedy CTC token error rate over ``batches`` of
    (encoded, text, text_lengths)."""
    refs: List[str] = []
    hyps: Dict[str, List[str]] = {key: [] for key in pre.keys}
    for encoded, text, text_lengths in batches:
        refs += [_words(row[:n]) for row, n in zip(pre.classes(text).tolist(), text_lengths.tolist())]
        for key in pre.keys:
            logp, lens = pre.log_probs(encoded, key)
            hyps[key] += [_words(h) for h in greedy(logp, lens)]
    return {key: jiwer.wer(refs, h) for key, h in hyps.items()}


def pretrain(args: argparse.Namespace) -> Dict[str, Any]:
    """Trains, keeps the best epoch in ``args.out``; returns ``epoch``,
    ``ter`` (validation token error rate per key at that epoch), ``norm``
    (the LayerNorm factors) and ``train_loss`` (mean CTC loss per epoch)."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    task_args = AVSRTask.get_parser().parse_args(
        ["--config", args.config, "--llm_conf", f"model_dir={args.llm_dir}"]
    )
    model = AVSRTask.build_model(task_args)
    for entry in args.init_param:
        try:
            load_pretrained_model(entry, model, ignore_init_mismatch=False, map_location="cpu")
        except RuntimeError as e:
            raise ValueError(f"{entry}: does not fit the model of {args.config}: {e}") from e
    model.eval()
    train_pre = AVSRTask.build_preprocess_fn(task_args, train=True)
    valid_pre = AVSRTask.build_preprocess_fn(task_args, train=False)
    text_file = next(Path(t.split(",")[0]) for t in args.train_data if t.split(",")[1] == "text")
    tokens = transcript_tokens(text_file, valid_pre)
    pre = ProjectorCTC(model, tokens)
    logging.info(f"projectors {list(pre.keys)}, upsampled {pre.upsample}; {len(tokens)} tokens + blank")
    train_batches, n_train = _loader(args.train_data, train_pre, args.batch_size)
    valid_batches, _ = _loader(args.valid_data, valid_pre, args.batch_size)

    def ready(batches, rng=None):
        for batch in batches(rng):
            yield _encoded(model, batch), batch["text"], batch["text_lengths"]

    valid = list(ready(valid_batches))
    params = list(pre.projectors.parameters()) + list(pre.head.parameters())
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    sched = warmup_cosine(optim, steps)
    rng = random.Random(args.seed)
    best: Dict[str, Any] = {"mean_ter": math.inf, "train_loss": []}
    for epoch in range(1, args.epochs + 1):
        pre.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for encoded, text, text_lengths in ready(train_batches, rng):
            loss = torch.stack(list(pre(encoded, text, text_lengths).values())).mean()
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optim.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        best["train_loss"].append(total / count)
        pre.eval()
        ter = token_error_rates(pre, valid)
        mean_ter = sum(ter.values()) / len(ter)
        logging.info(
            f"epoch {epoch}: train ctc {total / count:.3f}, valid greedy token error "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in ter.items())
            + f" ({time.perf_counter() - start:.0f} s)"
        )
        if mean_ter < best["mean_ter"]:
            best.update(mean_ter=mean_ter, ter=ter, epoch=epoch,
                        state={k: v.detach().clone() for k, v in pre.projectors.state_dict().items()})
    pre.projectors.load_state_dict(best.pop("state"))
    best["norm"] = pre.match_norms(valid)
    logging.info("LayerNorm scaled to the embedding rows' norm: " + ", ".join(
        f"{k} x{v:.3f}" for k, v in best["norm"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        torch.save({f"projectors.{k}": v for k, v in pre.projectors.state_dict().items()}, tmp)
    logging.info(f"{args.out}: epoch {best['epoch']}, mean valid token error {100 * best['mean_ter']:.1f} %")
    return best


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config naming the projectors")
    parser.add_argument("--llm_dir", required=True, help="LLM folder: its tokenizer and embedding table")
    parser.add_argument("--init_param", nargs="*", default=[], help="encoder checkpoints, as in training")
    parser.add_argument("--train_data", action="append", required=True,
                        help="ESPnet data triple path,name,type (repeat; a text triple among them)")
    parser.add_argument("--valid_data", action="append", required=True, help="likewise, for validation")
    parser.add_argument("--out", type=Path, required=True)
    add_schedule_arguments(parser, lr=2e-3)
    return parser


def main(cmd=None):
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    pretrain(get_parser().parse_args(cmd))


if __name__ == "__main__":
    main()
