#!/usr/bin/env python3
"""Stage 9's cross-fitted video features: training utterances encoded by an
encoder that never saw their speaker.

A stand-in video encoder CTC-trained on the training set describes those
very utterances better than any unseen voice, so a model trained on its
outputs learns to trust the lips more than they deserve at test time. With
K folds of the training *speakers*:

    python -m local.cross_fit split --data_dir dump/raw/train --folds 2 \\
        --out_dir exp/encoders/folds
        # fold<k>/train: the data dir without fold k's speakers (the k-th
        # encoder trains on it); folds.json: each speaker's fold
    python -m local.cross_fit dump --config conf/train.yaml --llm_dir exp/llm \\
        --modality video --folds_dir exp/encoders/folds --full exp/encoders/video.pth \\
        --train_dir dump/raw/train --valid_dir dump/raw/dev --out_dir exp/encoders/encoded

``dump`` writes ``<out_dir>/<set>/video_encoded.scp`` (the ``encoded`` data
type, one float16 (T, D) array per utterance) for the training set, each
fold's utterances encoded by its own fold's encoder, and for the valid set,
encoded by the full encoder (trained on every training speaker), which the
model keeps for decoding. Independently trained encoders do not share a
feature space, so each fold encoder's outputs are carried into the full
encoder's by an affine map fitted by least squares on the frames of the
utterances both encoders trained on (never on the held-out fold's). The
map reads each frame with ``--context`` frames either side: two encoders
trained apart place what they see at slightly different times (on
SynthGRID the map's R^2 on the valid set rose from 0.46 to 0.59 with 2
frames either side).
``<out_dir>/<train set>/cross_fit.json`` reports, per fold, the map's R^2
there and on the valid set, which neither encoder saw.
"""

import argparse
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.cli import run_logged
from espnet_mtsk.data.encoded import encoded_name
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.fileio import atomic_path, write_lines
from espnet_mtsk.tasks.avsr import AVSRTask
from local.encoder_pretrain import load_prefixed

FOLDS_FILE = "folds.json"
REPORT_FILE = "cross_fit.json"


def speaker_folds(speakers: List[str], folds: int, seed: int) -> Dict[str, int]:
    """Each speaker's fold (0 .. folds-1): the speakers in an order shuffled
    by ``seed``, dealt round-robin, so that fold sizes differ by one at most
    and a seed always gives the same split."""
    unique = sorted(set(speakers))
    if folds < 2:
        raise ValueError(f"cross-fitting needs 2 folds or more, got {folds}")
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} speakers cannot fill {folds} folds")
    order = random.Random(seed).sample(unique, len(unique))
    return {spk: i % folds for i, spk in enumerate(order)}


def subset_data_dir(data_dir: Path, out_dir: Path, keep: set, utt2spk: Dict[str, str]) -> None:
    """Copies a Kaldi data dir keeping the utterances of ``keep``: every
    file keyed by utterance id is filtered, ``spk2utt`` remade; other files
    are not copied (the encoder's training reads none of them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # Kaldi's files: text, utt2spk, wav.scp, ...; not the media some data dirs hold too.
    for path in sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix in ("", ".scp")):
        lines = path.read_text(encoding="utf-8").splitlines()
        keys = [line.split(maxsplit=1)[0] for line in lines if line.strip()]
        if not keys or not set(keys) <= utt2spk.keys():
            continue
        write_lines(out_dir / path.name, (line for line, key in zip(lines, keys) if key in keep))
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(keep):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    write_lines(out_dir / "spk2utt", (f"{spk} {' '.join(utts)}" for spk, utts in sorted(spk2utt.items())))


def split(args: argparse.Namespace) -> int:
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    utt2spk = read_2columns_text(str(data_dir / "utt2spk"))
    fold_of = speaker_folds(list(utt2spk.values()), args.folds, args.seed)
    for k in range(args.folds):
        keep = {utt for utt, spk in utt2spk.items() if fold_of[spk] != k}
        subset_data_dir(data_dir, out_dir / f"fold{k + 1}" / "train", keep, utt2spk)
    record = {"data_dir": str(data_dir), "folds": args.folds, "seed": args.seed, "speaker_fold": fold_of}
    write_lines(out_dir / FOLDS_FILE, [json.dumps(record, indent=1, sort_keys=True)])
    sizes = [sum(f == k for f in fold_of.values()) for k in range(args.folds)]
    logging.info(f"{data_dir}: {len(fold_of)} speakers in {args.folds} folds of {sizes} -> {out_dir}")
    return 0


class FrozenEncoder:
    """A config's encoder of one modality with a stage-9 checkpoint's
    weights, in eval mode: utterances -> float32 arrays (T', D)."""

    def __init__(self, task: argparse.Namespace, modality: str, checkpoint: Path):
        key = f"{modality}_encoder"
        # Only this encoder: the config's others may load pretrained weights.
        alone = argparse.Namespace(**{**vars(task), "frontend": None, "normalize": None})
        for other in ("audio_encoder", "video_encoder"):
            if other != key:
                setattr(alone, other, None)
        self.encoder = AVSRTask.build_encoders(alone)[key]
        load_prefixed(self.encoder, checkpoint, f"encoders.{modality}.", f"{modality} encoder of {task.config}")
        self.encoder.eval()

    @torch.no_grad()
    def __call__(self, frames: List[np.ndarray], batch_size: int = 16) -> List[np.ndarray]:
        out = []
        for first in range(0, len(frames), batch_size):
            batch = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in frames[first : first + batch_size]]
            lens = torch.tensor([len(x) for x in batch])
            hs, hlens, _ = self.encoder(torch.nn.utils.rnn.pad_sequence(batch, batch_first=True), lens)
            out.extend(h[:n].numpy() for h, n in zip(hs, hlens.tolist()))
        return out


def with_context(arrays: List[np.ndarray], context: int) -> List[np.ndarray]:
    """(T, D) -> (T, (2 context + 1) D): each frame beside its neighbours,
    the first and last frames repeated past the ends."""
    out = []
    for a in arrays:
        padded = np.pad(a, ((context, context), (0, 0)), mode="edge")
        out.append(np.concatenate([padded[i : i + len(a)] for i in range(2 * context + 1)], 1))
    return out


class AffineMap:
    """A least-squares affine map from source to target frames, each source
    frame read with ``context`` frames either side."""

    def __init__(self, source: List[np.ndarray], target: List[np.ndarray], context: int):
        self.context = context
        x = np.concatenate(with_context(source, context))
        x = np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1)
        self.weights = np.linalg.lstsq(x, np.concatenate(target), rcond=None)[0]

    def __call__(self, arrays: List[np.ndarray]) -> List[np.ndarray]:
        return [a @ self.weights[:-1] + self.weights[-1] for a in with_context(arrays, self.context)]


def r_squared(predicted: List[np.ndarray], target: List[np.ndarray]) -> float:
    """1 - residual / total sum of squares over every frame and dimension."""
    p, t = np.concatenate(predicted), np.concatenate(target)
    return float(1.0 - ((t - p) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())


def read_frames(task: argparse.Namespace, data_dir: Path, keys: List[str]) -> List[np.ndarray]:
    """The video of ``keys`` as the config's preprocessor gives it in
    evaluation (its ``video_crop`` included), as local.fused_features reads it."""
    reader = VideoScpReader(str(data_dir / "video.scp"))
    preprocess = AVSRTask.build_preprocess_fn(task, False, text=False)
    return [preprocess(uid, {"video": reader[uid]})["video"] for uid in keys]


def write_dump(out_dir: Path, name: str, keys: List[str], arrays: List[np.ndarray]) -> None:
    """``<out_dir>/<name>.scp`` and its float16 arrays in ``<out_dir>/<name>``,
    made anew: the scp last, so that a reader never finds a partial one."""
    (out_dir / f"{name}.scp").unlink(missing_ok=True)
    data = out_dir / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    lines = []
    for uid, array in zip(keys, arrays):
        path = data / f"{uid}.npy"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array.astype(np.float16))
        lines.append(f"{uid} {path}")
    write_lines(out_dir / f"{name}.scp", lines)


def dump(args: argparse.Namespace) -> int:
    start = time.time()
    task = AVSRTask.get_parser().parse_args(["--config", args.config, "--llm_conf", f"model_dir={args.llm_dir}"])
    folds_dir, train_dir, valid_dir = Path(args.folds_dir), Path(args.train_dir), Path(args.valid_dir)
    record = json.loads((folds_dir / FOLDS_FILE).read_text(encoding="utf-8"))
    utt2spk = read_2columns_text(str(train_dir / "utt2spk"))
    unknown = sorted(set(utt2spk.values()) - record["speaker_fold"].keys())
    if unknown:
        raise ValueError(f"{folds_dir / FOLDS_FILE}: no fold for speakers {unknown[:5]} of {train_dir}")
    train_keys = sorted(utt2spk)
    valid_keys = sorted(read_2columns_text(str(valid_dir / "video.scp")))
    train_frames, valid_frames = read_frames(task, train_dir, train_keys), read_frames(task, valid_dir, valid_keys)
    full = FrozenEncoder(task, args.modality, Path(args.full))
    full_train, full_valid = full(train_frames), full(valid_frames)
    fold_of = [record["speaker_fold"][utt2spk[uid]] for uid in train_keys]
    crossed: List[np.ndarray] = [np.empty(0)] * len(train_keys)
    report: Dict[str, object] = {
        "folds": record["folds"], "seed": record["seed"], "context": args.context, "per_fold": []
    }
    for k in range(record["folds"]):
        checkpoint = folds_dir / f"fold{k + 1}" / f"{args.modality}.pth"
        encoder = FrozenEncoder(task, args.modality, checkpoint)
        seen = [i for i, f in enumerate(fold_of) if f != k]
        held = [i for i, f in enumerate(fold_of) if f == k]
        own = encoder([train_frames[i] for i in seen])
        to_full = AffineMap(own, [full_train[i] for i in seen], args.context)
        for i, array in zip(held, to_full(encoder([train_frames[i] for i in held]))):
            crossed[i] = array
        fit = {
            "fold": k + 1,
            "speakers": sorted(s for s, f in record["speaker_fold"].items() if f == k),
            "utterances": len(held),
            "r2_fit": r_squared(to_full(own), [full_train[i] for i in seen]),
            "r2_valid": r_squared(to_full(encoder(valid_frames)), full_valid),
        }
        logging.info(f"fold {k + 1}: {len(held)} utterances; map R^2 {fit['r2_fit']:.3f} where fitted, "
                     f"{fit['r2_valid']:.3f} on {valid_dir}")
        report["per_fold"].append(fit)
    name = encoded_name(args.modality)
    out_dir = Path(args.out_dir)
    write_dump(out_dir / train_dir.name, name, train_keys, crossed)
    write_dump(out_dir / valid_dir.name, name, valid_keys, full_valid)
    write_lines(out_dir / train_dir.name / REPORT_FILE, [json.dumps(report, indent=1)])
    logging.info(f"{len(train_keys)} + {len(valid_keys)} utterances -> {out_dir} ({time.time() - start:.0f} s)")
    return 0


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split", help="the training speakers' folds and each fold encoder's data dir")
    p.add_argument("--data_dir", required=True, help="the training set (with utt2spk)")
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out_dir", required=True)
    p.set_defaults(run=split)
    p = sub.add_parser("dump", help="the cross-fitted training features and the valid set's")
    p.add_argument("--config", required=True, help="the training config naming the encoder")
    p.add_argument("--llm_dir", required=True, help="the LLM folder the config leaves out")
    p.add_argument("--modality", choices=["video"], default="video")
    p.add_argument("--folds_dir", required=True, help="split's out_dir, with fold<k>/<modality>.pth")
    p.add_argument("--full", required=True, help="the encoder trained on every training speaker")
    p.add_argument("--train_dir", required=True)
    p.add_argument("--valid_dir", required=True)
    p.add_argument("--out_dir", required=True, help="writes <out_dir>/<set>/<modality's data name>.scp")
    p.add_argument("--context", type=int, default=2, help="frames either side that the maps read")
    p.set_defaults(run=dump)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    return run_logged(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
