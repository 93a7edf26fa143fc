"""Run a training config's frozen pretrained audio encoder once over a data
dir and dump its outputs, for training on them (the ``encoded`` data type).

    python -m espnet_mtsk.bin.dump_encoded --config conf/train.yaml \\
        --data_dir dump/raw/train --out_dir dump/encoded/train \\
        --noise_scp dump/raw/noise.scp --noisy_copies 1

Writes ``<out_dir>/speech_encoded.scp`` (``utt clean.npy [noisy.npy ...]``)
and float16 arrays (T, D) under ``<out_dir>/data``. Each noisy copy mixes a
random noise of ``--noise_scp`` at an SNR drawn from ``--noise_db_range``,
seeded per utterance. The data dir's audio is read as ESPnet reads it
(pipes, ``segments``: ``espnet_mtsk.data.scp.AudioDirReader``).

``<out_dir>/provenance.json`` records what the arrays depend on (see
``provenance``): the audio encoder and front end of the config, its
weights' fingerprint, the noise and the seed. A dump made otherwise is made
again from scratch, the differences logged, so that a recipe rerun after a
config change never trains on stale outputs; one made alike resumes:
arrays already written are kept, and the scp is written last. Errors name
the utterance and file: a sample rate other than 16 kHz, audio and video
durations that differ by more than ``--av_tolerance``, an encoder that is
not pretrained and frozen.
"""

import argparse
import json
import logging
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from espnet2.fileio.read_text import read_2columns_text
from espnet2.utils.get_default_kwargs import get_default_kwargs

from espnet_mtsk.cli import run_logged
from espnet_mtsk.data.augment import DEFAULT_DB_RANGE, NoiseAugmenter, parse_db_range
from espnet_mtsk.data.encoded import encoded_name
from espnet_mtsk.data.preprocess import check_av_durations
from espnet_mtsk.data.scp import AudioDirReader
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.fileio import atomic_path, write_lines
from espnet_mtsk.hf_folder import fingerprint
from espnet_mtsk.model import audio_features
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import frozen_by

PRETRAINED_KEYS = ("model_dir", "checkpoint")
PROVENANCE = "provenance.json"
# Raised whenever the arrays or their layout change, so that dumps made
# before are made again.
DUMP_FORMAT = 1
# The model's state key prefix of each part build_encoders returns.
PART_KEYS = {"frontend": "frontend", "normalize": "normalize", "audio_encoder": "encoders.audio"}


def build_frozen_audio_encoder(task: argparse.Namespace) -> Dict[str, torch.nn.Module]:
    """The audio front end and encoder of a parsed training config, which
    must load pretrained weights of their own and be frozen by the config
    (every parameter): only then do their outputs stay what the model would
    compute while training."""
    conf = task.audio_encoder_conf or {}
    if not any(conf.get(k) for k in PRETRAINED_KEYS):
        raise ValueError(
            f"{task.config}: the audio encoder loads no pretrained weights ({' or '.join(PRETRAINED_KEYS)})"
        )
    parts = AVSRTask.build_encoders(task)
    parts.pop("video_encoder", None)
    for key, part in parts.items():
        for name, _ in part.named_parameters():
            if not frozen_by(f"{PART_KEYS[key]}.{name}", task.freeze_param or []):
                raise ValueError(
                    f"{task.config}: freeze_param does not freeze the audio encoder: "
                    f"{PART_KEYS[key]}.{name} would train"
                )
        part.eval()
    return parts


def built_with(task: argparse.Namespace, name: str) -> Optional[Dict[str, Any]]:
    """The choice a parsed config makes for component ``name`` (e.g.
    ``audio_encoder``) and every option it is built with: the class's
    defaults, then the config's ``<name>_conf``; None when it makes none."""
    choices = next(c for c in AVSRTask.class_choices_list if c.name == name)
    choice = getattr(task, name, None)
    cls = choices.get_class(choice)
    if cls is None:
        return None
    return {"choice": choice, **get_default_kwargs(cls), **(getattr(task, f"{name}_conf") or {})}


def provenance(task: argparse.Namespace, args: argparse.Namespace) -> Dict[str, Any]:
    """What the arrays of a dump depend on, as JSON reads it back: the dump
    format; the audio encoder and front end the training config ``task``
    builds (``built_with``), its pretrained weights by their fingerprint,
    not their path; the number of noisy copies and, with copies, the noise
    files (their fingerprints), the SNR range and the seed of the dump's
    ``args``."""
    made: Dict[str, Any] = {name: built_with(task, name) for name in PART_KEYS}
    encoder = made["audio_encoder"]
    made["audio_encoder_weights"] = {
        key: fingerprint(Path(encoder.pop(key))) for key in PRETRAINED_KEYS if encoder.get(key)
    }
    made.update(format=DUMP_FORMAT, noisy_copies=args.noisy_copies, noise=None)
    if args.noisy_copies:
        made["noise"] = {
            "files": {key: fingerprint(Path(path)) for key, path in read_2columns_text(args.noise_scp).items()},
            "db_range": list(parse_db_range(args.noise_db_range)),
            "seed": args.seed,
        }
    return json.loads(json.dumps(made))


def differences(old: Any, new: Any, name: str = "") -> List[str]:
    """``name: old -> new`` for each value that differs between two JSON
    values, dicts compared key by key (dotted names)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            line
            for key in sorted(old.keys() | new.keys())
            for line in differences(old.get(key), new.get(key), f"{name}.{key}" if name else key)
        ]
    return [] if old == new else [f"{name}: {old!r} -> {new!r}"]


def prepare_out_dir(out_dir: Path, made: Dict[str, Any]) -> None:
    """Makes ``out_dir`` a dump of provenance ``made``: a dump made
    otherwise, or without a record of how, is removed first (its scp, then
    its arrays) and the reason logged; one made alike is left to resume."""
    record = out_dir / PROVENANCE
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if old == made:
        return
    if old is not None:
        logging.warning(f"{out_dir} was made otherwise; encoding again:\n  " + "\n  ".join(differences(old, made)))
    elif (out_dir / "data").exists():
        logging.warning(f"{out_dir} has no readable {PROVENANCE} to say how it was made; encoding again")
    (out_dir / f"{encoded_name('audio')}.scp").unlink(missing_ok=True)
    shutil.rmtree(out_dir / "data", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_lines(record, [json.dumps(made, indent=1, sort_keys=True)])


def dump(args: argparse.Namespace) -> int:
    overrides = ["--llm_conf", f"model_dir={args.llm_dir}"] if args.llm_dir else []
    task = AVSRTask.get_parser().parse_args(["--config", args.config, *overrides])
    parts = build_frozen_audio_encoder(task)
    data_dir, out_dir = Path(args.data_dir), Path(args.out_dir)
    if out_dir.resolve() == data_dir.resolve():
        # A dump made otherwise is removed, and stage 3 keeps the data dir's
        # own audio in its data/.
        raise ValueError(f"--out_dir {out_dir} is the data dir: give the dump a folder of its own")
    wavs = AudioDirReader(data_dir)
    videos = VideoScpReader(str(data_dir / "video.scp")) if (data_dir / "video.scp").exists() else None
    noise = None
    if args.noisy_copies:
        if not args.noise_scp:
            raise ValueError("--noisy_copies needs --noise_scp")
        noise = NoiseAugmenter(args.noise_scp, args.noise_db_range, apply_prob=1.0)
    prepare_out_dir(out_dir, provenance(task, args))
    (out_dir / "data").mkdir(exist_ok=True)
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
            clean[uid] = wavs[uid]
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
