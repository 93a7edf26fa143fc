#!/usr/bin/env python3
"""Stage 9: the frozen pre-trained video encoder's outputs of data dirs,
dumped once for training on them (the ``encoded`` data type).

Stage 9 pre-trains the stand-in video encoder on talkers of its own
(``avsr.sh --encoder_pretrain_set``) and training keeps it frozen, as the
paper keeps AV-HuBERT; running it over the training set once instead of in
every epoch spares training a fifth of its time. Decoding runs the encoder
on the video itself.

    python -m local.encoded_video --config conf/train.yaml --llm_dir exp/llm \\
        --checkpoint exp/encoders/video.pth --data_dirs dump/raw/train dump/raw/dev \\
        --out_dir exp/encoders/encoded

writes ``<out_dir>/<set>/video_encoded.scp``, one float16 (T', D) array per
utterance under ``<out_dir>/<set>/video_encoded``, each set made anew and
its scp last.
"""

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import torch
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.cli import run_logged
from espnet_mtsk.data.encoded import encoded_name
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.fileio import atomic_path, write_lines
from espnet_mtsk.tasks.avsr import AVSRTask
from local.encoder_pretrain import load_prefixed


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
    encoder = FrozenEncoder(task, "video", Path(args.checkpoint))
    name = encoded_name("video")
    for data_dir in map(Path, args.data_dirs):
        keys = sorted(read_2columns_text(str(data_dir / "video.scp")))
        write_dump(Path(args.out_dir) / data_dir.name, name, keys, encoder(read_frames(task, data_dir, keys)))
        logging.info(f"{data_dir}: {len(keys)} utterances -> {Path(args.out_dir) / data_dir.name / name}.scp")
    logging.info(f"done in {time.time() - start:.0f} s")
    return 0


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the training config naming the video encoder")
    p.add_argument("--llm_dir", required=True, help="the LLM folder the config leaves out")
    p.add_argument("--checkpoint", required=True, help="stage 9's video encoder (encoders.video.* keys)")
    p.add_argument("--data_dirs", nargs="+", required=True, help="data dirs with video.scp")
    p.add_argument("--out_dir", required=True, help="writes <out_dir>/<set>/video_encoded.scp")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    return run_logged(lambda: dump(args))


if __name__ == "__main__":
    sys.exit(main())
