"""Fused audio-visual features for ESPnet's ASR task (the conventional AVSR
baseline): the frozen audio and video encoders of a trained espnet-mtsk
model, each average-pooled to one common frame rate and concatenated per
frame, as ESPnet's egs2/lrs3/avsr1 trains on AV-HuBERT features. Only
the encoders are loaded (``AVSRTask.build_encoders_from_file``): the
LLM's folder is not read.

    python -m local.fused_features --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.ave.pth --rates a2_v1 a12_v6 \\
        --data_dir dump/raw/test_clean --out_dir dump/fused

A rate pair is written as a scale id (``a2_v1``: Whisper's 50 Hz pooled 2x,
25 fps video as it is: 25 Hz); both modalities must reach the same rate.
Writes ``<out_dir>/<rates>/<set>/`` with ``feats.scp`` + ``feats.ark``
(kaldi, float32 (T, D_audio + D_video)), ``feats_shape`` (``utt T,D``),
``text`` and ``speech_seconds``. With ``--encoded_scp`` (the dumped audio
encoder outputs of ``espnet_mtsk.bin.dump_encoded``) the audio comes from
those arrays, one output utterance per variant (``<utt>``, then
``<utt>-noisy1``, ...), so training sees the clean and noisy variants the
Matryoshka model trained on. Without it the audio encoder runs on the
data dir's audio (files, pipes or ``segments``: ``AudioDirReader``) and
``encode_seconds`` holds each utterance's share of the encoders' wall
time, which the decoding's real-time factor includes. With
``--video_encoded_scp`` (the video encoder's outputs stage 9 dumped,
``local.encoded_video``) the video comes from those arrays, as the
Matryoshka model's training reads them.
"""

import argparse
import logging
import shutil
import sys
import time
import zlib
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import kaldiio
import numpy as np
import torch
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.cli import add_pretrained_arguments, run_logged
from espnet_mtsk.compress import AvgPoolCompressor
from espnet_mtsk.data.encoded import read_variants_scp
from espnet_mtsk.data.scp import AudioDirReader
from espnet_mtsk.data.video import VideoScpReader
from espnet_mtsk.fileio import SAMPLE_RATE, VIDEO_FPS, write_lines
from espnet_mtsk.reporting.cost import encoder_frame_rates
from espnet_mtsk.scales import Scale, parse_scale
from espnet_mtsk.tasks.avsr import AVSRTask

Pooled = Dict[str, Tuple[torch.Tensor, torch.Tensor]]


def fusion_scales(rate_ids: Sequence[str], frame_rates: Dict[str, float]) -> List[Scale]:
    """Audio-visual scales whose two modalities reach the same frame rate."""
    scales = []
    for rate_id in rate_ids:
        scale = parse_scale(rate_id)
        if scale.modalities != ("audio", "video"):
            raise ValueError(f"--rates {rate_id}: needs an audio and a video rate (e.g. a2_v1)")
        hz = {m: frame_rates[m] / r for m, r in scale.rates}
        if abs(hz["audio"] - hz["video"]) > 1e-6:
            raise ValueError(f"--rates {rate_id}: audio at {hz['audio']:.3g} Hz, video at {hz['video']:.3g} Hz")
        scales.append(scale)
    return scales


def fuse(encoded: Pooled, scale: Scale) -> List[np.ndarray]:
    """{modality: ((B, T, D), (B,))} -> B arrays (T', D_audio + D_video):
    each modality average-pooled by its rate of ``scale``, cut to the
    shorter of the two (they differ by a frame where durations round
    differently) and concatenated per frame."""
    pool = AvgPoolCompressor()
    pooled = {m: pool(*encoded[m], rate) for m, rate in scale.rates}
    (a, alens), (v, vlens) = pooled["audio"], pooled["video"]
    lens = torch.minimum(alens, vlens)
    return [torch.cat([a[i, :n], v[i, :n]], -1).numpy() for i, n in enumerate(lens.tolist())]


def drops_video(uid: str, prob: float) -> bool:
    """Whether an utterance's video half is zeroed: modality dropout, as
    AV-HuBERT and ESPnet's ``avhubert`` encoder train on their fused
    features, drawn here once per utterance (seeded by its id), so that a
    model learns to read the audio alone too."""
    return prob > 0 and np.random.default_rng(zlib.crc32(uid.encode())).random() < prob


def batches(keys: List[str], size: int) -> Iterator[List[str]]:
    for first in range(0, len(keys), size):
        yield keys[first : first + size]


def padded(arrays: Sequence[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(x) for x in arrays])
    tensors = [torch.from_numpy(np.asarray(x, dtype=np.float32)) for x in arrays]
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lens


def write_set(args: argparse.Namespace) -> None:
    encoders, train_args = AVSRTask.build_encoders_from_file(
        args.asr_train_config,
        args.asr_model_file,
        pretrained_dirs=dict(args.pretrained_dir),
        accept_pretrained_changes=args.accept_pretrained_changes,
    )
    encoders.eval()
    scales = fusion_scales(args.rates, encoder_frame_rates(vars(train_args)))
    preprocess = AVSRTask.build_preprocess_fn(train_args, False, text=False)
    data_dir = Path(args.data_dir)
    name = args.name or data_dir.name
    texts = read_2columns_text(str(data_dir / "text"))
    video_reader = VideoScpReader(str(data_dir / "video.scp"))
    variants = read_variants_scp(args.encoded_scp) if args.encoded_scp else None
    video_dumped = read_variants_scp(args.video_encoded_scp) if args.video_encoded_scp else None
    wavs = None if variants else AudioDirReader(data_dir)
    outs = {s.id: Path(args.out_dir) / s.id / name for s in scales}
    tmps = {k: v.with_name(f".{v.name}.tmp") for k, v in outs.items()}
    for tmp in tmps.values():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    writers = {k: kaldiio.WriteHelper(f"ark,scp:{tmp}/feats.ark,{tmp}/feats.scp") for k, tmp in tmps.items()}
    rows: Dict[str, List[str]] = {f: [] for f in ("text", "speech_seconds", "encode_seconds")}
    shapes: Dict[str, List[str]] = {k: [] for k in tmps}
    keys = sorted(texts)
    start = time.time()
    for batch in batches(keys, args.batch_size):
        if video_dumped is None:
            frames = [preprocess(uid, {"video": video_reader[uid]})["video"] for uid in batch]
        clock = time.perf_counter()
        with torch.no_grad():
            if video_dumped is None:
                video = encoders("video", *padded(frames))
            else:
                video = padded([np.load(_variant(video_dumped, uid, 0, 1, "video")) for uid in batch])
            if variants is None:
                waves = [wavs[uid] for uid in batch]
                audio = [encoders("audio", *padded(waves))]
                ids = [batch]
                seconds = [len(w) / SAMPLE_RATE for w in waves]
            else:
                count = len(variants[batch[0]])
                audio, ids = [], []
                for k in range(count):
                    arrays = [np.load(_variant(variants, uid, k, count, "audio")) for uid in batch]
                    audio.append(padded(arrays))
                    ids.append([uid if k == 0 else f"{uid}-noisy{k}" for uid in batch])
                seconds = [n / VIDEO_FPS for n in video[1].tolist()]
        share = (time.perf_counter() - clock) / len(batch)
        for audio_k, ids_k in zip(audio, ids):
            encoded = {"audio": audio_k, "video": video}
            for scale in scales:
                for uid, feats in zip(ids_k, fuse(encoded, scale)):
                    if drops_video(uid, args.video_dropout):
                        feats[:, audio_k[0].size(-1) :] = 0.0
                    writers[scale.id](uid, feats)
                    shapes[scale.id].append(f"{uid} {feats.shape[0]},{feats.shape[1]}")
            for uid, orig, sec in zip(ids_k, batch, seconds):
                rows["text"].append(f"{uid} {texts[orig]}")
                rows["speech_seconds"].append(f"{uid} {sec:.3f}")
                rows["encode_seconds"].append(f"{uid} {share:.4f}")
    for writer in writers.values():
        writer.close()
    if variants is not None:
        del rows["encode_seconds"]  # the audio encoder did not run here
    for scale_id, tmp in tmps.items():
        for fname, lines in rows.items():
            write_lines(tmp / fname, sorted(lines))
        write_lines(tmp / "feats_shape", sorted(shapes[scale_id]))
        # The scp names the ark where it will be once the folder is renamed.
        scp = tmp / "feats.scp"
        scp.write_text(scp.read_text().replace(f"{tmp}/feats.ark", f"{outs[scale_id]}/feats.ark"))
        shutil.rmtree(outs[scale_id], ignore_errors=True)
        tmp.rename(outs[scale_id])
    logging.info(f"{data_dir}: {len(rows['text'])} utterances -> {list(map(str, outs.values()))} ({time.time() - start:.0f} s)")


def _variant(variants: Dict[str, List[str]], uid: str, k: int, count: int, modality: str) -> str:
    if uid not in variants:
        raise ValueError(f"utterance '{uid}' has no dumped {modality} encoder outputs")
    if len(variants[uid]) != count:
        raise ValueError(f"utterance '{uid}' has {len(variants[uid])} dumped variants, others {count}")
    return variants[uid][k]


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", required=True, help="a trained espnet-mtsk model's config")
    parser.add_argument("--asr_model_file", required=True)
    parser.add_argument("--rates", nargs="+", required=True, help="scale ids, e.g. a2_v1 a12_v6")
    parser.add_argument("--data_dir", required=True, help="holds text, video.scp (and wav.scp)")
    parser.add_argument("--encoded_scp", default=None, help="dumped audio encoder outputs of the set")
    parser.add_argument("--video_encoded_scp", default=None, help="dumped video encoder outputs of the set")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--name", default=None, help="the set's folder name (default: the data dir's)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--video_dropout", type=float, default=0.0,
                        help="share of utterances whose video half is zeroed (training sets)")
    add_pretrained_arguments(parser)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    return run_logged(lambda: write_set(get_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
