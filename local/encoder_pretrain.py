#!/usr/bin/env python3
"""Stage 9: pre-train a stand-in audio or video encoder with CTC.

The paper's encoders (Whisper, AV-HuBERT) arrive pretrained and stay frozen.
Recipes without such weights build the encoder a training config names and
pre-train it here on the training set with a CTC head over the LLM
tokenizer's tokens that the training transcripts use (a few hundred pieces
of a stand-in's tokenizer, or the few dozen a 49k BPE vocabulary spends on
GRID's 51 words, where a head over the whole of it would cost more than the
encoder); training then loads it (``--init_param``) and
freezes it, as in the paper. The checkpoint holds the model's own keys
(``encoders.audio.*``, ``frontend.*``), keeps the epoch with the lowest
validation WER, and is written atomically.

ESPnet's ``ASRTask`` with ``ctc_weight: 1.0`` does this job for its own
parts, not for this task's: its encoder choices hold neither this task's
Whisper nor its AV-HuBERT-shaped video encoder; its ``speech`` input and
``CommonPreprocessor`` expect audio (S,), not video frames (T, H, W); its
vocabulary is a token list file, not the LLM's tokenizer folder whose ids
the CTC head shares (``token_type: hugging_face`` still needs the list);
and its checkpoint keys (``encoder.*``) are not the model's
(``encoders.<modality>.*``). This loop reuses the task's own encoders,
preprocessor and collate function, and ESPnet's ``CTC`` module.
"""

import argparse
import copy
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Dict, List

import jiwer
import numpy as np
import torch
from espnet2.asr.ctc import CTC
from espnet2.train.dataset import ESPnetDataset

from espnet_mtsk.data.augment import DEFAULT_DB_RANGE
from espnet_mtsk.data.collate import AVSRCollateFn
from espnet_mtsk.data.preprocess import AVSRPreprocessor
from espnet_mtsk.fileio import atomic_path
from espnet_mtsk.model import audio_features
from espnet_mtsk.tasks.avsr import AVSRTask

DATA = {"audio": ("wav.scp", "speech", "sound"), "video": ("video.scp", "video", "video")}


def transcript_tokens(text_file: Path, preprocess) -> List[int]:
    """The sorted token ids of the transcripts in a Kaldi ``text`` file, as
    the preprocessor tokenises them."""
    ids = set()
    with open(text_file) as f:
        for line in f:
            uid, _, text = line.rstrip("\n").partition(" ")
            ids.update(preprocess(uid, {"text": text})["text"].tolist())
    return sorted(ids)


class CTCPretrainer(torch.nn.Module):
    """(audio front end) + encoder + CTC head: inputs (B, T, ...) -> loss.

    ``tokens``: the LLM token ids the head predicts; class 0 is CTC's blank,
    class i the i-th of them. Targets and outputs are LLM token ids.
    """

    def __init__(self, encoder, tokens: List[int], frontend=None, normalize=None):
        super().__init__()
        self.frontend = frontend
        self.normalize = normalize
        self.encoder = encoder
        self.ctc = CTC(len(tokens) + 1, encoder.output_size())
        to_class = torch.zeros(max(tokens) + 1, dtype=torch.long)
        to_class[torch.tensor(tokens)] = torch.arange(1, len(tokens) + 1)
        self.register_buffer("to_class", to_class, persistent=False)
        self.register_buffer("to_token", torch.tensor([-1, *tokens]), persistent=False)

    def encode(self, xs: torch.Tensor, lens: torch.Tensor):
        if self.frontend is not None or self.normalize is not None:
            xs, lens = audio_features(self.frontend, self.normalize, xs, lens)
        hs, hlens, _ = self.encoder(xs, lens)
        return hs, hlens

    def forward(self, xs, lens, text, text_lengths) -> torch.Tensor:
        hs, hlens = self.encode(xs, lens)
        # Padding (negative ids) maps to a class too; CTC reads only text_lengths.
        classes = self.to_class[text.clamp(min=0, max=self.to_class.numel() - 1)]
        return self.ctc(hs, hlens, classes, text_lengths)

    @torch.no_grad()
    def greedy(self, xs: torch.Tensor, lens: torch.Tensor) -> List[List[int]]:
        """Best path per utterance, repeats collapsed, blanks dropped: LLM token ids."""
        hs, hlens = self.encode(xs, lens)
        best = self.ctc.argmax(hs)
        out = []
        for seq, n in zip(best.tolist(), hlens.tolist()):
            collapsed = [t for i, t in enumerate(seq[:n]) if t != 0 and (i == 0 or seq[i - 1] != t)]
            out.append(self.to_token[collapsed].tolist())
        return out


def add_schedule_arguments(parser: argparse.ArgumentParser, lr: float) -> None:
    """``--epochs``, ``--batch_size``, ``--lr`` (default ``lr``) and ``--seed``
    of a stage-9 pre-training."""
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--seed", type=int, default=0)


def warmup_cosine(optim: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The stage-9 pre-trainings' schedule over ``steps``: a linear warm-up
    over the first tenth, then a cosine decay to 0."""
    warmup = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )


def load_prefixed(module: torch.nn.Module, checkpoint: Path, prefix: str, what: str) -> None:
    """Loads the keys under ``prefix`` of a checkpoint this script wrote
    into ``module``; a ValueError naming the checkpoint when they do not fit
    ``what`` (e.g. "video encoder")."""
    state = torch.load(checkpoint, map_location="cpu")
    try:
        module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    except RuntimeError as e:
        raise ValueError(f"{checkpoint}: does not fit the {what}: {e}") from e


def _loader(data_dir: Path, modality: str, preprocess, batch_size: int, shuffle: bool, limit: int = 0):
    """Batches of the data dir's utterances (``limit`` > 0: that many, evenly
    spaced over the sorted ids, so over the speakers) and their number."""
    fname, name, kind = DATA[modality]
    dataset = ESPnetDataset(
        [(str(data_dir / fname), name, kind), (str(data_dir / "text"), "text", "text")],
        preprocess=preprocess,
    )
    keys = list(dataset.loader_dict["text"].keys())
    if 0 < limit < len(keys):
        keys = sorted(keys)
        keys = [keys[i * len(keys) // limit] for i in range(limit)]
    collate = AVSRCollateFn()

    def batches(rng: random.Random):
        order = list(keys)
        if shuffle:
            rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield collate([dataset[k] for k in order[i : i + batch_size]])

    return batches, len(keys)


def _wer(model, batches, tokenizer, name: str) -> float:
    model.eval()
    refs, hyps = [], []
    for _, batch in batches(random.Random(0)):
        for ids, n, hyp in zip(
            batch["text"].tolist(),
            batch["text_lengths"].tolist(),
            model.greedy(batch[name], batch[f"{name}_lengths"]),
        ):
            refs.append(tokenizer.decode(ids[:n]))
            hyps.append(tokenizer.decode(hyp))
    return jiwer.wer(refs, hyps)


def pretrain(args: argparse.Namespace) -> Dict[str, Any]:
    """Trains, keeps the best epoch in ``args.out``; returns ``epoch`` and
    ``wer`` of that epoch, ``train_loss``, the mean CTC loss per epoch, and
    ``eval``: that epoch's greedy WER on each of ``args.eval_dirs``."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    parser = AVSRTask.get_parser()
    task_args = parser.parse_args(
        ["--config", args.config, "--llm_conf", f"model_dir={args.llm_dir}"]
    )
    parts = AVSRTask.build_encoders(task_args)
    key = f"{args.modality}_encoder"
    if key not in parts:
        raise ValueError(f"{args.config} names no {key}")
    train_pre = AVSRPreprocessor(
        train=True,
        llm_dir=args.llm_dir,
        noise_scp=args.noise_scp,
        noise_db_range=args.noise_db_range,
        noise_apply_prob=args.noise_apply_prob,
    )
    valid_pre = AVSRPreprocessor(train=False, llm_dir=args.llm_dir)
    name = DATA[args.modality][1]
    train_batches, n_train = _loader(args.train_dir, args.modality, train_pre, args.batch_size, True)
    valid_batches, _ = _loader(args.valid_dir, args.modality, valid_pre, args.batch_size, False)
    front = {k: parts.get(k) for k in ("frontend", "normalize")} if args.modality == "audio" else {}
    tokens = transcript_tokens(args.train_dir / "text", valid_pre)
    logging.info(f"CTC head: {len(tokens)} tokens of the transcripts + blank")
    model = CTCPretrainer(parts[key], tokens, **front)
    prefix = {
        "frontend": "frontend.",
        "normalize": "normalize.",
        "encoder": f"encoders.{args.modality}.",
    }
    if args.init is not None:
        # Warm start: the encoder (and front end); the CTC head starts afresh.
        for part in prefix:
            if getattr(model, part) is not None:
                load_prefixed(getattr(model, part), args.init, prefix[part], f"{args.modality} {part}")
    optim = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    sched = warmup_cosine(optim, steps)
    rng = random.Random(args.seed)
    best: Dict[str, Any] = {"wer": math.inf, "train_loss": []}
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for _, batch in train_batches(rng):
            loss = model(batch[name], batch[f"{name}_lengths"], batch["text"], batch["text_lengths"])
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
            sched.step()
            total, count = total + loss.item(), count + 1
        best["train_loss"].append(total / count)
        wer = _wer(model, valid_batches, train_pre.tokenizer, name)
        logging.info(
            f"{args.modality} epoch {epoch}: train ctc {total / count:.3f}, "
            f"valid greedy WER {100 * wer:.1f} % ({time.perf_counter() - start:.0f} s)"
        )
        if wer < best["wer"]:
            best.update(wer=wer, epoch=epoch, model=copy.deepcopy(model.state_dict()))
            state = {
                prefix[part] + k: v.detach().clone()
                for part in prefix
                if getattr(model, part) is not None
                for k, v in getattr(model, part).state_dict().items()
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(args.out) as tmp:
                torch.save(state, tmp)
    logging.info(f"{args.out}: epoch {best['epoch']}, valid greedy WER {100 * best['wer']:.1f} %")
    model.load_state_dict(best.pop("model"))
    best["eval"] = {}
    for data_dir in args.eval_dirs:
        batches, n = _loader(data_dir, args.modality, valid_pre, args.batch_size, False, args.eval_utts)
        best["eval"][str(data_dir)] = _wer(model, batches, train_pre.tokenizer, name)
        logging.info(f"{args.out}: eval greedy WER {100 * best['eval'][str(data_dir)]:.1f} % on {n} utterances of {data_dir}")
    return best


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config naming the encoder")
    parser.add_argument("--llm_dir", required=True, help="LLM folder, for its tokenizer")
    parser.add_argument("--modality", choices=sorted(DATA), required=True)
    parser.add_argument("--train_dir", type=Path, required=True)
    parser.add_argument("--valid_dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    add_schedule_arguments(parser, lr=1e-3)
    parser.add_argument("--init", type=Path, default=None, help="a checkpoint of this script to start from")
    parser.add_argument("--noise_scp", default=None, help="noise for the audio, as in training")
    parser.add_argument("--noise_db_range", default=DEFAULT_DB_RANGE, help="SNR range (dB), 'low_high'")
    parser.add_argument("--noise_apply_prob", type=float, default=0.5)
    parser.add_argument("--eval_dirs", type=Path, nargs="*", default=[],
                        help="data dirs the best epoch is evaluated on too (e.g. the training set of the model "
                        "that will read the encoder's outputs)")
    parser.add_argument("--eval_utts", type=int, default=0, help="utterances of each eval dir (0: all)")
    return parser


def main(cmd=None):
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    pretrain(get_parser().parse_args(cmd))


if __name__ == "__main__":
    main()
