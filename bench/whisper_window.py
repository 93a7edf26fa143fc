"""What a short Whisper window costs and saves, on a SynthGRID data dir.

    python bench/whisper_window.py --data_dir egs2/synthgrid/avsr1/dump/raw/dev \\
        --model_dir egs2/synthgrid/avsr1/exp/pretrained/whisper-tiny.en \\
        [--asr_train_config exp/x/config.yaml --asr_model_file exp/x/valid.acc.ave.pth --scales a4 a4_v3]

Per window (Whisper's own 30 s, a fixed number of seconds, the batch's
longest utterance): encoder seconds per utterance (median of --reps passes
over the set, batches of --batch_size sorted by length) and the mean cosine
similarity of its states to the 30 s window's. With a trained model, also
its WER per scale when its Whisper runs on each window (the model was
trained on one of them: the others measure the mismatch as well).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import List, Union

import jiwer
import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from espnet_mtsk.data.video import VideoScpReader  # noqa: E402
from espnet_mtsk.encoders.whisper import HFWhisperEncoder  # noqa: E402
from espnet_mtsk.reporting.scoring import normalise  # noqa: E402


def window_arg(value: str) -> Union[float, str]:
    return value if value in ("full", "longest") else float(value)


def batches(items: List, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True)
    parser.add_argument("--model_dir", required=True, help="the Whisper HF folder")
    parser.add_argument("--windows", type=window_arg, nargs="+", default=["full", 3.0, "longest"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--asr_train_config")
    parser.add_argument("--asr_model_file")
    parser.add_argument("--scales", nargs="+", default=[])
    parser.add_argument("--beam_size", type=int, default=4)
    args = parser.parse_args(argv)
    print(machine(torch.device("cpu"), torch.float32), flush=True)

    wavs = dict(line.split(maxsplit=1) for line in (args.data_dir / "wav.scp").read_text().splitlines())
    refs = dict(line.split(maxsplit=1) for line in (args.data_dir / "text").read_text().splitlines())
    uids = sorted(wavs, key=lambda u: sf.info(wavs[u].strip()).frames)
    waves = {u: torch.from_numpy(sf.read(wavs[u].strip(), dtype="float32")[0]) for u in uids}
    pad = lambda group: (  # noqa: E731
        torch.nn.utils.rnn.pad_sequence([waves[u] for u in group], batch_first=True),
        torch.tensor([len(waves[u]) for u in group]),
    )

    states, seconds = {}, {}
    for window in args.windows:
        encoder = HFWhisperEncoder(model_dir=args.model_dir, window=window).eval()
        times, outs = [], []
        with torch.no_grad():
            for rep in range(args.reps):
                start = time.perf_counter()
                outs = [encoder(*pad(group)) for group in batches(uids, args.batch_size)]
                times.append((time.perf_counter() - start) / len(uids))
        states[window] = [h[i, : int(lens[i])] for h, lens, _ in outs for i in range(len(lens))]
        seconds[window] = times
        print(f"window {window}: {statistics.median(times) * 1000:.1f} ms/utt "
              f"(reps {', '.join(f'{t * 1000:.1f}' for t in times)})", flush=True)

    print("\n| window | encoder ms/utt | x 30 s window | cosine to 30 s |\n|---|---|---|---|")
    full = statistics.median(seconds["full"]) if "full" in seconds else None
    for window in args.windows:
        cos = "—"
        if "full" in states:
            cos = f"{np.mean([torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(states[window], states['full'])]):.3f}"
        med = statistics.median(seconds[window])
        ratio = f"{med / full:.2f}" if full else "—"
        print(f"| {window} | {med * 1000:.1f} | {ratio} | {cos} |")

    if args.asr_train_config:
        from espnet_mtsk.tasks.avsr import AVSRTask

        model, _ = AVSRTask.build_model_from_file(args.asr_train_config, args.asr_model_file)
        model.eval()
        video_scp = args.data_dir / "video.scp"
        videos = VideoScpReader(str(video_scp)) if video_scp.exists() else None
        audio = model.encoders["audio"]
        print("\n| window | " + " | ".join(args.scales) + " |\n|---|" + "---|" * len(args.scales))
        for window in args.windows:
            audio.set_window(window)
            hyps = {s: [] for s in args.scales}
            for group in batches(uids, args.batch_size):
                speech, lens = pad(group)
                video = vlens = None
                if videos is not None:
                    frames = [torch.from_numpy(videos[u]) for u in group]
                    video = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)
                    vlens = torch.tensor([len(f) for f in frames])
                encoded = model.encode(speech, lens, video, vlens)
                for scale in args.scales:
                    texts = model.recognize(scale, encoded=encoded, beam_size=args.beam_size, max_new_tokens=16).texts
                    hyps[scale] += texts
            truth = [normalise(refs[u]) for u in uids]
            wers = [100 * jiwer.wer(truth, [normalise(h) for h in hyps[s]]) for s in args.scales]
            print(f"| {window} | " + " | ".join(f"{w:.1f}" for w in wers) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
