#!/usr/bin/env python3
"""Stages 5-8: a stand-in LLM for recipes that have no pretrained one.

``build``: trains a sentencepiece tokenizer on the training text and the
instruction prompts (every sequence the LLM reads holds one, and a real
LLM's tokenizer spells them in a few tokens) and writes a randomly
initialised tiny Llama folder; ``train``: pre-trains it on text
(plain next-token prediction, like the LLM's own pre-training);
``perplexity``: reports its perplexity on held-out text. With a real LLM
(``--llm_dir`` in the recipe) none of this runs.
"""

import argparse
import logging
import math
import random
import tempfile
from pathlib import Path
from typing import List

import torch

from local.standins import build_llama, tokenizer_corpus


def _lines(text_file: Path) -> List[str]:
    """Transcripts of a Kaldi ``text`` file (``utt words...``), lower-cased."""
    out = []
    for line in text_file.read_text(encoding="utf-8").splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[1].strip():
            out.append(parts[1].strip().lower())
    return out


def _encode(tokenizer, lines: List[str]):
    return tokenizer(
        [tokenizer.bos_token + t + tokenizer.eos_token for t in lines],
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )


def _batches(
    tokenizer, lines: List[str], batch_size: int, rng: random.Random, repeat_prob: float
):
    # Real LLMs copy from their context (induction heads), which is how they
    # come to read a prefix of projected audio-visual tokens. A stand-in
    # trained on lone sentences never needs to copy and then learns to read
    # that prefix many times more slowly; sentences that repeat within an
    # example teach it to copy.
    while True:
        rng.shuffle(lines)
        for i in range(0, len(lines) - batch_size + 1, batch_size):
            chunk = lines[i : i + batch_size]
            yield _encode(
                tokenizer, [f"{t} {t}" if rng.random() < repeat_prob else t for t in chunk]
            )


def _labels(batch) -> torch.Tensor:
    return batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)


def train(
    llm_dir: Path,
    text: Path,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    repeat_prob: float = 0.5,
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir))
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=lr, total_steps=steps, pct_start=0.1)
    batches = _batches(tokenizer, _lines(text), batch_size, random.Random(seed), repeat_prob)
    for step in range(1, steps + 1):
        batch = next(batches)
        loss = model(**batch, labels=_labels(batch)).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            logging.info(f"step {step}/{steps} loss {loss.item():.3f}")
    # Written next to the old weights then swapped in, so a killed run never
    # leaves a folder with half a model.
    with tempfile.TemporaryDirectory(dir=llm_dir.parent, prefix=f".{llm_dir.name}.") as tmp:
        model.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            f.replace(llm_dir / f.name)


@torch.no_grad()
def perplexity(llm_dir: Path, text: Path) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(llm_dir)).eval()
    lines = _lines(text)
    total, count = 0.0, 0
    for i in range(0, len(lines), 64):
        batch = _encode(tokenizer, lines[i : i + 64])
        labels = _labels(batch)
        n = int((labels[:, 1:] != -100).sum())
        total += model(**batch, labels=labels).loss.item() * n
        count += n
    return math.exp(total / count)


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--text", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--vocab_size", type=int, default=400)
    b.add_argument("--hidden_size", type=int, default=128)
    b.add_argument("--num_layers", type=int, default=2)
    b.add_argument("--num_heads", type=int, default=4)
    t = sub.add_parser("train")
    t.add_argument("--llm_dir", type=Path, required=True)
    t.add_argument("--text", type=Path, required=True)
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--batch_size", type=int, default=32)
    t.add_argument(
        "--repeat_prob", type=float, default=0.5,
        help="share of examples whose sentence is said twice (teaches copying)",
    )
    p = sub.add_parser("perplexity")
    p.add_argument("--llm_dir", type=Path, required=True)
    p.add_argument("--text", type=Path, required=True)
    for s in (b, t):
        s.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")

    if args.command == "build":
        build_llama(
            str(args.out), tokenizer_corpus(_lines(args.text)), args.vocab_size, args.hidden_size,
            args.num_layers, args.num_heads, args.seed,
        )
    elif args.command == "train":
        train(
            args.llm_dir, args.text, args.steps, args.lr, args.batch_size, args.seed,
            args.repeat_prob,
        )
    else:
        print(f"perplexity {perplexity(args.llm_dir, args.text):.3f}")


if __name__ == "__main__":
    main()
