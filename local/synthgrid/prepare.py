"""Generates the SynthGRID corpus and its Kaldi-style data dirs.

    python -m local.synthgrid.prepare --db_dir downloads/synthgrid \\
        --data_dir data --seed 0 --nj 2

Under ``db_dir``:
    wav/clean/<spk>/<utt>.wav       16 kHz mono PCM16
    wav/snr<N>/<spk>/<utt>.wav      dev, test and some training utterances with
                                    babble at N dB (test: test pool, others: training pool)
    video/<spk>/<utt>.npy           uint8 (T, H, W) mouth ROI at 25 fps
    noise/{train,test}/babble_*.wav  two separate babble pools
    speakers.tsv                    who is who
    settings.json                   what the files were made with
Under ``data_dir``: ``train``, ``dev``, ``test_clean`` and ``test_snr<N>``
(same utterances and videos as ``test_clean``, noisy audio), each with
wav.scp, video.scp, text, utt2spk, spk2utt sorted by utterance id;
``dev_noisy`` (the first ``noisy_dev_utts`` utterances of every dev speaker,
dev's and more, at every condition, ``clean`` and ``snr<N>``, as
``<utt>-<condition>``), ``train_noisy`` (the first
``noisy_train_utts`` utterances of every training speaker, likewise),
``test_noisy`` (every test utterance at every condition: the noisy test
sets together) and
``test_mixed`` (every test utterance once, at a condition drawn uniformly),
which also have utt2condition; ``noise/wav.scp`` listing the training babble for
on-the-fly augmentation; with ``--pretrain_speakers``, ``pretrain``: talkers
of their own (voices no other set has, ``draw_pretrain_speakers``) for
pre-training an encoder apart from the task's utterances.

Every random draw is keyed by (seed, what it is for, utterance id), so the
corpus does not depend on ``nj`` or the order of the work. Files are written
atomically and existing ones are kept, so an interrupted run can be resumed
by running it again; the data dirs are rewritten at the end of every run.
``db_dir/settings.json`` records the seed and the settings that change
existing files (video size, speaker counts, babble); a run with other values
stops rather than mix two corpora. Numbers of utterances and SNRs may change
between runs.
"""

import argparse
import functools
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from espnet_mtsk.data.augment import mix_at_snr
from espnet_mtsk.data.video import write_video_npy
from espnet_mtsk.fileio import (
    SAMPLE_RATE,
    VIDEO_FPS,
    from_pcm16,
    read_wav,
    remove_temp_files,
    to_pcm16,
    write_data_dir,
    write_lines,
    write_wav,
)
from espnet_mtsk.process_pool import process_pool
from local.synthgrid.grammar import random_sentence, transcript
from local.synthgrid.noise import babble
from local.synthgrid.render import VIDEO_SIZE, render_video
from local.synthgrid.seeding import rng_for
from local.synthgrid.speakers import Speaker, draw_pretrain_speakers, draw_speakers

# name: (default, help). About 35 s with --nj 2 on 2 busy cores.
_SIZES = dict(
    train_speakers=(12, "speakers in train"),
    dev_speakers=(2, "speakers in dev"),
    test_speakers=(4, "speakers in the test sets"),
    noise_speakers=(12, "babble talkers: half for the training pool, half for the test pool"),
    pretrain_speakers=(0, "talkers of data/pretrain, for pre-training an encoder apart from the task's data"),
    pretrain_utts_per_speaker=(20, "utterances per pretrain talker"),
    utts_per_speaker=(100, "utterances per train speaker"),
    test_utts_per_speaker=(25, "utterances per dev and per test speaker"),
    noisy_dev_utts=(75, "utterances per dev speaker in dev_noisy (dev's and more; noisy copies, training babble)"),
    noisy_train_utts=(5, "utterances per train speaker in train_noisy (noisy copies, training babble)"),
    snrs=((-5, 0, 5, 10), "SNRs (dB) of the noisy dev and test copies"),
    video_size=(VIDEO_SIZE, "mouth ROI height = width in pixels (32 for CPU runs, 88 LRS3-like)"),
    babble_files=(8, "babble files in the training pool (data/noise/wav.scp, dev_noisy, train_noisy)"),
    test_babble_files=(4, "babble files in the test pool"),
    babble_seconds=(6.0, "length of each babble file"),
)
DEFAULT_SIZES = {name: default for name, (default, _) in _SIZES.items()}
# The settings that change files already written (speaker ids map to other
# voices, babble is picked otherwise); the others only add or leave out files.
_CONTENT_SETTINGS = (
    "video_size",
    "babble_seconds",
    "train_speakers",
    "dev_speakers",
    "test_speakers",
    "noise_speakers",
    "babble_files",
    "test_babble_files",
)
CLEAN = "clean"  # the condition of the clean copies


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    speaker: Speaker
    words: Tuple[str, ...]
    wav: str
    video: str
    noisy: Tuple[Tuple[int, str], ...]  # (SNR dB, wav path), dev and test only
    babble: Tuple[str, ...] = ()  # the pool (paths) the noisy copies draw from


@dataclass(frozen=True)
class Babble:
    name: str
    path: str
    talkers: Tuple[Speaker, ...]


@dataclass(frozen=True)
class _Settings:
    seed: int
    video_size: int
    babble_seconds: float


def snr_name(snr: int) -> str:
    """-5 -> "snr-5": the suffix of the noisy test dirs and wav folders, and
    the condition of those copies."""
    return f"snr{snr}"


def wav_at(utt: Utterance, condition: str) -> str:
    """The wav of ``utt`` at ``condition``: :data:`CLEAN` or ``snr_name(N)``."""
    return utt.wav if condition == CLEAN else dict((snr_name(s), p) for s, p in utt.noisy)[condition]


def synthesize_utterance(utt: Utterance, seed: int, video_size: int = VIDEO_SIZE) -> Tuple[np.ndarray, np.ndarray]:
    """Speaks and renders one utterance.

    The speech is scaled to -29..-23 dBFS RMS and padded with 0.15..0.35 s
    of silence at each end, where the video shows a closed mouth.

    Returns:
        (int16 (S,) at 16 kHz, uint8 video (T, H, W) at 25 fps) with
        T = round(S / 16000 * 25).
    """
    rng = rng_for(seed, "utterance", utt.utt_id)
    wave, phonemes = utt.speaker.speak(utt.words, noise_seed=int(rng.integers(2**31)))
    level = 10 ** (rng.uniform(-29, -23) / 20)
    wave = wave * (level / (np.sqrt(np.mean(wave**2)) + 1e-9))
    lead, tail = (int(rng.uniform(0.15, 0.35) * SAMPLE_RATE) for _ in range(2))
    pcm = to_pcm16(np.concatenate([np.zeros(lead), wave, np.zeros(tail)]))
    n_frames = int(round(len(pcm) / SAMPLE_RATE * VIDEO_FPS))
    timed = [("_", 0.0)] + [(p, t + lead / SAMPLE_RATE) for p, t in phonemes]
    video = render_video(timed, n_frames, utt.speaker.look, rng_for(seed, "video", utt.utt_id), video_size)
    return pcm, video


def _load_noise(path: str) -> np.ndarray:
    # Keyed by mtime too: a babble file regenerated in a later run is reread.
    return _read_noise(path, os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_noise(path: str, mtime_ns: int) -> np.ndarray:
    return from_pcm16(read_wav(path))


def _make_utterance(job: Tuple[Utterance, _Settings]) -> None:
    utt, settings = job
    pcm = None
    if not (os.path.exists(utt.wav) and os.path.exists(utt.video)):
        pcm, video = synthesize_utterance(utt, settings.seed, settings.video_size)
        for path in (utt.wav, utt.video):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video_npy(utt.video, video)
        write_wav(utt.wav, pcm)
    missing = [(snr, path) for snr, path in utt.noisy if not os.path.exists(path)]
    if missing:
        clean = from_pcm16(read_wav(utt.wav) if pcm is None else pcm)
        pick = rng_for(settings.seed, "babble-file", utt.utt_id).integers(len(utt.babble))
        noise = _load_noise(utt.babble[pick])
        for snr, path in missing:
            # The same rng for every SNR: the same stretch of babble, louder.
            mixed = mix_at_snr(clean, noise, snr, rng_for(settings.seed, "mix", utt.utt_id))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_wav(path, to_pcm16(mixed))


def _make_babble(job: Tuple[Babble, _Settings]) -> None:
    item, settings = job
    if os.path.exists(item.path):
        return
    noise = babble(item.talkers, settings.babble_seconds, rng_for(settings.seed, "babble", item.name))
    os.makedirs(os.path.dirname(item.path), exist_ok=True)
    write_wav(item.path, to_pcm16(noise))


def _init_worker() -> None:
    # nj processes share the cores already; torch's threads would contend
    # (a 2 s torchaudio op took 100x longer with them on a busy machine).
    torch.set_num_threads(1)


def _run(fn: Callable, jobs: Sequence, nj: int, desc: str) -> None:
    if nj <= 1 or len(jobs) <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # many tiny noise mixings: threads only add overhead
        try:
            for job in tqdm(jobs, desc=desc):
                fn(job)
        finally:
            torch.set_num_threads(threads)
        return
    with process_pool(nj, ["local.synthgrid.prepare"], _init_worker) as pool:
        for _ in tqdm(pool.map(fn, jobs, chunksize=4), total=len(jobs), desc=desc):
            pass


def _check_settings(db_dir: str, settings: dict) -> None:
    """Records the content settings in db_dir, or checks them against the
    record: resuming with other ones would mix two corpora."""
    path = os.path.join(db_dir, "settings.json")
    if os.path.exists(path):
        with open(path) as f:
            recorded = json.load(f)
        if recorded == settings:
            return
        # Records from before the noisy dev copies lack babble_files: their
        # corpora hold no file it changes, so they take this run's value.
        older = {k: v for k, v in settings.items() if k != "babble_files"}
        if "babble_files" in recorded or recorded != older:
            raise ValueError(
                f"{db_dir} holds a corpus made with {recorded}, not {settings}; "
                "use another --db_dir or delete this one"
            )
    write_lines(path, [json.dumps(settings, sort_keys=True)])


def _plan_utterances(
    db_dir: str, speakers: List[Speaker], n_utts: int, seed: int, snrs: Sequence[int], babble: Sequence[str] = ()
) -> List[Utterance]:
    utts = []
    for spk in speakers:
        for i in range(1, n_utts + 1):
            utt_id = f"{spk.spk_id}_{i:04d}"
            noisy = tuple(
                (snr, os.path.join(db_dir, "wav", snr_name(snr), spk.spk_id, f"{utt_id}.wav")) for snr in snrs
            )
            utts.append(
                Utterance(
                    utt_id=utt_id,
                    speaker=spk,
                    words=random_sentence(rng_for(seed, "sentence", utt_id)),
                    wav=os.path.join(db_dir, "wav", "clean", spk.spk_id, f"{utt_id}.wav"),
                    video=os.path.join(db_dir, "video", spk.spk_id, f"{utt_id}.npy"),
                    noisy=noisy,
                    babble=tuple(babble),
                )
            )
    return utts


def _first(utts: Sequence[Utterance], n: int) -> List[Utterance]:
    """The first ``n`` utterances of each speaker (``_plan_utterances``' ids)."""
    return [u for u in utts if int(u.utt_id.rsplit("_", 1)[1]) <= n]


def _plan_babble(db_dir: str, pool: str, talkers: List[Speaker], n_files: int) -> List[Babble]:
    return [
        Babble(f"babble_{pool}_{i:03d}", os.path.join(db_dir, "noise", pool, f"babble_{i:03d}.wav"), tuple(talkers))
        for i in range(n_files)
    ]


def write_set(folder: str, copies: Sequence[Tuple[str, Utterance, str]], with_conditions: bool = False) -> None:
    """The data dir (``fileio.write_data_dir``) of ``copies``: (utt id,
    utterance, condition), the audio that of the condition (:func:`wav_at`);
    with ``utt2condition`` if ``with_conditions``."""
    tables = {
        "wav.scp": {i: wav_at(u, c) for i, u, c in copies},
        "video.scp": {i: u.video for i, u, _ in copies},
        "text": {i: transcript(u.words) for i, u, _ in copies},
        "utt2spk": {i: u.speaker.spk_id for i, u, _ in copies},
    }
    if with_conditions:
        tables["utt2condition"] = {i: c for i, _, c in copies}
    write_data_dir(folder, tables)


def _at(utts: Sequence[Utterance], condition: str = CLEAN) -> List[Tuple[str, Utterance, str]]:
    return [(u.utt_id, u, condition) for u in utts]


def prepare(db_dir: str, data_dir: str, seed: int = 0, nj: int = 1, **sizes) -> Dict[str, List[Speaker]]:
    """Generates (or completes) the corpus and (re)writes the data dirs.

    Args:
        db_dir: where wavs, videos and babble go.
        data_dir: where the Kaldi-style dirs go.
        seed: the one seed everything is drawn from.
        nj: worker processes.
        sizes: overrides of :data:`DEFAULT_SIZES`.

    Returns:
        speakers by group: "train", "dev", "test", "noise", "pretrain".
    """
    unknown = set(sizes) - set(DEFAULT_SIZES)
    if unknown:
        raise TypeError(f"unknown sizes: {sorted(unknown)}")
    cfg = {**DEFAULT_SIZES, **sizes}
    if cfg["noise_speakers"] < 2:
        raise ValueError("need at least 2 noise speakers: one per babble pool")
    if cfg["snrs"] and min(cfg["babble_files"], cfg["test_babble_files"]) < 1:
        raise ValueError("noisy dev and test copies need at least one babble file in each pool")
    snrs = [int(s) for s in cfg["snrs"]]
    groups = draw_speakers(
        seed,
        {
            "train": cfg["train_speakers"],
            "dev": cfg["dev_speakers"],
            "test": cfg["test_speakers"],
            "noise": cfg["noise_speakers"],
        },
    )
    pretrain = draw_pretrain_speakers(seed, cfg["pretrain_speakers"], groups)
    half = len(groups["noise"]) // 2
    babble_talkers = {"noise-train": groups["noise"][:half], "noise-test": groups["noise"][half:]}
    train_babble = _plan_babble(db_dir, "train", babble_talkers["noise-train"], cfg["babble_files"])
    test_babble = _plan_babble(db_dir, "test", babble_talkers["noise-test"], cfg["test_babble_files"])
    splits = {
        "train": _plan_utterances(db_dir, groups["train"], cfg["utts_per_speaker"], seed, ()),
        "pretrain": _plan_utterances(db_dir, pretrain, cfg["pretrain_utts_per_speaker"], seed, ()),
        "test": _plan_utterances(
            db_dir, groups["test"], cfg["test_utts_per_speaker"], seed, snrs, [b.path for b in test_babble]
        ),
    }
    settings = _Settings(seed, cfg["video_size"], cfg["babble_seconds"])

    os.makedirs(db_dir, exist_ok=True)
    _check_settings(db_dir, {"seed": seed, **{k: cfg[k] for k in _CONTENT_SETTINGS}})
    remove_temp_files(db_dir)
    _run(_make_babble, [(b, settings) for b in train_babble + test_babble], nj, "babble")
    # Noisy copies, mixed with the training babble (the test babble stays
    # unheard), of every dev speaker's utterances, more of them than dev
    # holds, and of the first utterances of each training speaker: the per-
    # utterance policy's WER table and its condition estimate's many voices.
    dev_all = _plan_utterances(
        db_dir, groups["dev"], max(cfg["test_utts_per_speaker"], cfg["noisy_dev_utts"]), seed, snrs,
        [b.path for b in train_babble],
    )
    splits["dev"] = _first(dev_all, cfg["test_utts_per_speaker"])
    noisy_dev = _first(dev_all, cfg["noisy_dev_utts"])
    noisy_train = _plan_utterances(
        db_dir, groups["train"], min(cfg["noisy_train_utts"], cfg["utts_per_speaker"]), seed, snrs,
        [b.path for b in train_babble],
    )
    with_copies = {u.utt_id: u for u in noisy_train}
    all_utts = [with_copies.get(u.utt_id, u) for u in splits["train"]] + dev_all + splits["test"] + splits["pretrain"]
    _run(_make_utterance, [(u, settings) for u in all_utts], nj, "utterances")

    write_set(os.path.join(data_dir, "train"), _at(splits["train"]))
    if pretrain:
        write_set(os.path.join(data_dir, "pretrain"), _at(splits["pretrain"]))
    write_set(os.path.join(data_dir, "dev"), _at(splits["dev"]))
    write_set(os.path.join(data_dir, "test_clean"), _at(splits["test"]))
    conditions = [CLEAN] + [snr_name(snr) for snr in snrs]
    for condition in conditions[1:]:
        write_set(os.path.join(data_dir, f"test_{condition}"), _at(splits["test"], condition))
    for name, utts in (("dev_noisy", noisy_dev), ("train_noisy", noisy_train), ("test_noisy", splits["test"])):
        write_set(
            os.path.join(data_dir, name), [(f"{u.utt_id}-{c}", u, c) for u in utts for c in conditions],
            with_conditions=True,
        )
    mixed = [
        (u.utt_id, u, conditions[rng_for(seed, "mixed-condition", u.utt_id).integers(len(conditions))])
        for u in splits["test"]
    ]
    write_set(os.path.join(data_dir, "test_mixed"), mixed, with_conditions=True)
    os.makedirs(os.path.join(data_dir, "noise"), exist_ok=True)
    write_lines(os.path.join(data_dir, "noise", "wav.scp"), (f"{b.name} {b.path}" for b in train_babble))
    roles = {"train": groups["train"], "dev": groups["dev"], "test": groups["test"], **babble_talkers,
             "pretrain": pretrain}
    write_lines(
        os.path.join(db_dir, "speakers.tsv"),
        ["spk_id\trole\tvoice\trate_wpm\tpitch\tpitch_range"]
        + [
            f"{s.spk_id}\t{role}\t{s.espeak_voice}\t{s.rate}\t{s.pitch}\t{s.pitch_range}"
            for role, members in roles.items()
            for s in members
        ],
    )
    return {**groups, "pretrain": pretrain}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db_dir", required=True, help="where the wavs, videos and babble go")
    parser.add_argument("--data_dir", required=True, help="where the Kaldi-style data dirs go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1, help="worker processes")
    for name, (default, help) in _SIZES.items():
        if name == "snrs":
            parser.add_argument("--snrs", type=int, nargs="+", default=list(default), help=help)
        else:
            parser.add_argument(f"--{name}", type=type(default), default=default, help=f"{help} ({default})")
    return parser


def main(argv=None) -> None:
    args = vars(get_parser().parse_args(argv))
    prepare(args.pop("db_dir"), args.pop("data_dir"), args.pop("seed"), args.pop("nj"), **args)


if __name__ == "__main__":
    main()
