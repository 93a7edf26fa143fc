"""Run a training config's frozen pretrained audio encoder once over a data
dir and dump its outputs, for training on them (the ``encoded`` data type).

    python -m espnet_mtsk.bin.dump_encoded --config conf/train.yaml \\
        --data_dir dump/raw/train --out_dir dump/encoded/train \\
        --noise_scp dump/raw/noise.scp --noisy_copies 1

Writes ``<out_dir>/speech_encoded.scp`` (``utt clean.npy [noisy.npy ...]``)
and float16 arrays (T, D) under ``<out_dir>/data``. Each noisy copy mixes a
random noise of ``--noise_scp`` at an SNR drawn from ``--noise_db_range``,
seeded per utterance. Resumable: arrays already written are kept; the scp
is written last. Errors name the utterance and file: a sample rate other
than 16 kHz, audio and video durations that differ by more than
``--av_tolerance``, an encoder that is not pretrained and frozen.
"""

import argparse
import logging
import sys
import time
import zlib
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import soundfile
import torch
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.cli import run_logged
from espnet_mtsk.data.augment import DEFAULT_DB_RANGE, NoiseAugmenter
from espnet_mtsk.data.encoded import encoded_name
from espnet_mtsk.data.preprocess import check_av_durations
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.fileio import SAMPLE_RATE, atomic_path, write_lines
from espnet_mtsk.model import audio_features
from espnet_mtsk.tasks.avsr import AVSRTask

PRETRAINED_KEYS = ("model_dir", "checkpoint")


def build_frozen_audio_encoder(config: str, llm_dir: Optional[str]) -> Dict[str, torch.nn.Module]:
    """The config's audio front end and encoder, which must load pretrained
    weights of their own and be frozen by the config: only then do their
    outputs stay what the model would compute while training."""
    overrides = ["--llm_conf", f"model_dir={llm_dir}"] if llm_dir else []
    args = AVSRTask.get_parser().parse_args(["--config", config, *overrides])
    conf = args.audio_encoder_conf or {}
    if not any(conf.get(k) for k in PRETRAINED_KEYS):
        raise ValueError(f"{config}: the audio encoder loads no pretrained weights ({' or '.join(PRETRAINED_KEYS)})")
    frozen = set(args.freeze_param or [])
    if not frozen & {"encoders", "encoders.audio"}:
        raise ValueError(f"{config}: freeze_param does not freeze the audio encoder (encoders or encoders.audio)")
    parts = AVSRTask.build_encoders(args)
    parts.pop("video_encoder", None)
    for part in parts.values():
        part.eval()
    return parts


def read_speech(uid: str, path: str) -> np.ndarray:
    speech, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{uid}: {path} is {rate} Hz, expected {SAMPLE_RATE}")
    return speech.mean(axis=1)


def dump(args: argparse.Namespace) -> int:
    parts = build_frozen_audio_encoder(args.config, args.llm_dir)
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    wavs = read_2columns_text(str(data_dir / "wav.scp"))
    videos = VideoScpReader(str(data_dir / "video.scp")) if (data_dir / "video.scp").exists() else None
    noise = None
    if args.noisy_copies:
        if not args.noise_scp:
            raise ValueError("--noisy_copies needs --noise_scp")
        noise = NoiseAugmenter(args.noise_scp, args.noise_db_range, apply_prob=1.0)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    variants = 1 + args.noisy_copies
    paths = {uid: [out_dir / "data" / f"{uid}.{k}.npy" for k in range(variants)] for uid in wavs}
    todo = [(uid, k) for uid in wavs for k in range(variants) if not paths[uid][k].exists()]
    logging.info(f"{data_dir}: {len(wavs)} utterances x {variants} variants, {len(todo)} to encode")
    start = time.time()
    for first in range(0, len(todo), args.batch_size):
        batch = todo[first : first + args.batch_size]
        # The variants of an utterance sit side by side: read and check it once.
        clean: Dict[str, np.ndarray] = {}
        for uid in dict.fromkeys(uid for uid, _ in batch):
            clean[uid] = read_speech(uid, wavs[uid])
            if videos is not None:
                check_av_durations(uid, len(clean[uid]), len(videos[uid]), args.av_tolerance)
        waves: List[np.ndarray] = []
        for uid, k in batch:
            speech = clean[uid]
            if k > 0:
                rng = np.random.default_rng([args.seed, k, zlib.crc32(uid.encode())])
                speech = noise(speech, rng)
            waves.append(speech)
        lens = torch.tensor([len(w) for w in waves])
        xs = torch.nn.utils.rnn.pad_sequence([torch.from_numpy(w) for w in waves], batch_first=True)
        with torch.no_grad():
            xs, lens = audio_features(parts.get("frontend"), parts.get("normalize"), xs, lens)
            hs, hlens, _ = parts["audio_encoder"](xs, lens)
        for (uid, k), h, n in zip(batch, hs, hlens):
            with atomic_path(paths[uid][k]) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, h[: int(n)].numpy().astype(np.float16))
        done = first + len(batch)
        if done % (args.batch_size * 25) < args.batch_size or done == len(todo):
            logging.info(f"{done}/{len(todo)} encoded ({time.time() - start:.0f} s)")
    write_lines(out_dir / f"{encoded_name('audio')}.scp", (f"{uid} {' '.join(map(str, paths[uid]))}" for uid in wavs))
    return 0


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config naming the audio encoder")
    parser.add_argument("--llm_dir", default=None, help="the LLM folder, when the config leaves it out")
    parser.add_argument("--data_dir", required=True, help="a data dir with wav.scp (and video.scp)")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--noise_scp", default=None)
    parser.add_argument("--noisy_copies", type=int, default=0, help="noisy variants per utterance")
    parser.add_argument("--noise_db_range", default=DEFAULT_DB_RANGE, help="SNR range (dB) of the noisy copies, 'low_high'")
    parser.add_argument("--av_tolerance", type=float, default=0.2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    return run_logged(lambda: dump(get_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
