#!/usr/bin/env python3
"""LRS2 / LRS3 -> Kaldi-style data dirs ``data/{train,dev,test}`` (stage 1).

Two input layouts are read (``--layout auto`` tells them apart):

``raw``: the corpus as released.
    LRS3: ``pretrain/``, ``trainval/``, ``test/`` of ``<spk>/<id>.mp4`` and
    ``<id>.txt``. LRS2: ``main/`` and ``pretrain/`` (inside ``mvlrs_v1/``)
    with the lists ``pretrain.txt``, ``train.txt``, ``val.txt``, ``test.txt``
    (one ``<spk>/<id>`` per line, test lines may carry a second field) in the
    corpus folder or its parent. A ``.txt`` starts with ``Text:  SOME WORDS``;
    pretrain ones also hold word timings (``WORD START END [ASDSCORE]`` lines
    under a ``WORD START END ...`` header).

``auto_avsr``: the output of mpc001/auto_avsr ``preparation/``:
    ``<root>/labels/<dataset>_<subset>_transcript_lengths_seg16s.csv`` with
    lines ``dataset,rel_path,input_length,token_ids`` (Llama-AVSR's label
    files add a fifth column, the lower-cased transcript), the mouth crops
    ``<root>/<dataset>/<rel_path>`` (``<dataset>_video_seg16s/<subset>/<spk>/
    <id>.mp4``, 96x96, 25 fps), their audio beside them (same name, ``.wav``,
    16 kHz mono) and the transcripts in ``<dataset>_text_seg16s/...txt``.
    Pretrain clips were already cut there into ``<id>_NN`` pieces.

Splits (ESPnet ``egs2/lrs3/avsr1``'s utterance ids and validation list):
- utterance id ``<subset>_<spk>_<id>`` (``trainval_UGtFXtnWME4_50021``),
  pretrain pieces ``pretrain_<spk>_<id>_<NN>`` (auto-avsr's piece names, so
  both layouts give the same ids); speaker ``<subset>_<spk>``, a prefix of
  the utterance id, so Kaldi's sort orders agree;
- LRS3: train = pretrain pieces + trainval - dev; dev = the trainval
  utterances of AV-HuBERT's ``lrs3-valid.id`` (1,200, the list ESPnet uses)
  when ``--valid_list`` names it, else the last trainval speakers in sorted
  order, whole speakers, until ``--dev_size`` utterances; test = test/.
- LRS2: train = train.txt + pretrain pieces, dev = val.txt, test = test.txt
  (auto_avsr: its train, val and test label files).

Long utterances: pretrain clips longer than ``--max_duration`` (16 s) are cut
with their word timings into pieces of at most 16 s (greedily: a piece runs
from its first word's start, 0 for the first piece, to its last word's end);
clips up to 16 s stay whole. Pieces are written as their own files (wav and
mouth-crop ``.npy``), not as a Kaldi ``segments`` file: ESPnet's ``sound``
reader and our ``video`` reader take whole files, and training then reads a
piece, not its 100-s clip. Cuts fall on video frame boundaries (audio sample
``640 * frame``), so audio and video stay aligned.

Transcripts: the ``Text:`` line (pieces: their words), non-speech markers in
braces (``{LG}``) removed, lower-cased, spaces collapsed.

Audio: 16 kHz mono PCM16 decoded from the mp4 with PyAV, written atomically
(temporary name + rename) to ``data/<set>/wav/<utt>.wav``, in ``--nj``
parallel jobs; files already there are kept (re-running resumes).

Video (raw layout): mouth crops by ``python -m espnet_mtsk.bin.crop_mouth``
(or the ``cropper`` given to :func:`prepare`) into ``data/<set>/crops/``,
pieces sliced from their clip's crop into ``data/<set>/video/<utt>.npy``.
A clip whose crop failed loses its utterances from every list; they are
logged and listed in ``data/<set>/dropped`` (``utt reason``), as are clips
whose audio cannot be decoded. auto_avsr layout: ``video.scp`` points at its
crops and ``wav.scp`` at its wavs (extracted from the mp4 only where no wav
is there).

Noisy test sets (``--noise_wav``, ``--noisy_snrs``): ``data/test_snr<N>``,
the test utterances with babble mixed in at N dB (:func:`make_noisy_copies`).

``python -m espnet_mtsk.data.lrs --corpus lrs3 --db_dir $LRS3 --data_dir data
--nj 8 --valid_list local/lrs3-valid.id`` (see ``--help``).
"""

import argparse
import logging
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from espnet_mtsk.data.synthgrid.files import remove_temp_files, write_lines, write_wav

SAMPLE_RATE = 16000
VIDEO_FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS  # 640
MAX_DURATION = 16.0
SETS = ("train", "dev", "test")
LIST_FILES = ("wav.scp", "video.scp", "text", "utt2spk", "spk2utt")

# cropper(scp, outdir, out_scp, nj, size): the interface of
# ``python -m espnet_mtsk.bin.crop_mouth``: reads ``id path`` lines, writes
# ``outdir/<id>.npy`` (or ``<id>.mp4``: crop_mouth --format mp4), an scp of
# the successes and ``outdir/failed.list``. Pieces are cut into ``.npy``.
Cropper = Callable[[str, str, str, int, int], None]


# ----------------------------------------------------------------- text files


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


_MARKER = re.compile(r"\{[^}]*\}")


def normalize_text(text: str) -> str:
    """Drops ``{...}`` markers, lower-cases, collapses white space."""
    return " ".join(_MARKER.sub(" ", text).lower().split())


def read_lrs_txt(path: str) -> Tuple[str, List[Word]]:
    """An LRS2/LRS3 ``.txt`` -> (the ``Text:`` line as is, word timings).

    Raises ValueError naming the file when the first line is not ``Text:``
    or a timing line is malformed.
    """
    with open(path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    if not lines or not lines[0].startswith("Text:"):
        raise ValueError(f"{path}: first line is not 'Text:  ...'")
    text = lines[0][len("Text:") :].strip()
    words: List[Word] = []
    timed = False
    for n, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not timed:
            timed = fields[:3] == ["WORD", "START", "END"]
            continue
        if not fields:
            continue
        try:
            words.append(Word(fields[0], float(fields[1]), float(fields[2])))
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}:{n}: bad word timing line {line!r}") from e
    return text, words


@dataclass(frozen=True)
class Piece:
    """A stretch of a clip in seconds and its transcript; ``whole``: the
    whole clip, uncut."""

    start: float
    end: float
    text: str
    whole: bool = False


def plan_pieces(
    text: str, words: Sequence[Word], duration: float, max_duration: float = MAX_DURATION
) -> List[Piece]:
    """Cuts a clip into pieces of at most ``max_duration`` seconds.

    A clip no longer than that stays whole (its ``Text:`` transcript).
    Otherwise words go greedily into a piece while the piece, from its first
    word's start (0 for the first piece) to its last word's end, fits; a
    single word longer than the limit is a piece of its own. Raises
    ValueError for a long clip without word timings.
    """
    if duration <= max_duration + 1e-6:
        return [Piece(0.0, duration, text, whole=True)]
    if not words:
        raise ValueError(f"{duration:.2f} s > {max_duration:g} s and no word timings to cut it")
    pieces: List[Piece] = []
    current: List[Word] = []
    start = 0.0
    for word in words:
        if current and word.end - start > max_duration:
            pieces.append(Piece(start, current[-1].end, " ".join(w.word for w in current)))
            start, current = word.start, []
        current.append(word)
    pieces.append(Piece(start, current[-1].end, " ".join(w.word for w in current)))
    return pieces


def frame_span(piece: Piece) -> Tuple[int, int]:
    """A piece's video frames [first, last + 1): start rounded down, end up."""
    first = int(math.floor(piece.start * VIDEO_FPS + 1e-6))
    last = int(math.ceil(piece.end * VIDEO_FPS - 1e-6))
    return first, max(last, first + 1)


# -------------------------------------------------------------------- corpus


@dataclass
class Clip:
    """One source file and what becomes of it.

    ``key``: ``<subset>/<spk>/<id>`` as in the corpus lists. ``media``: the
    mp4 (raw: the face video; auto_avsr: the mouth crop). ``audio``: an
    existing 16 kHz wav to use as is (auto_avsr), else None (decode media).
    ``txt``: the corpus ``.txt`` (raw) or None with ``text`` given.
    ``split``: cut into pieces (raw pretrain clips).
    """

    key: str
    media: str
    txt: Optional[str] = None
    text: Optional[str] = None
    audio: Optional[str] = None
    split: bool = False

    @property
    def clip_id(self) -> str:
        return self.key.replace("/", "_")

    @property
    def speaker(self) -> str:
        return "_".join(self.key.split("/")[:-1]) or self.clip_id


@dataclass
class Utterance:
    utt_id: str
    clip_id: str
    speaker: str
    text: str
    wav: str
    frames: Optional[Tuple[int, int]] = None  # None: the whole clip
    video: Optional[str] = None


@dataclass
class SetResult:
    utts: List[Utterance] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)  # utt or clip id -> reason


def _key_of(path: Path, root: Path, depth: int = 3) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return "/".join(parts[-depth:])


def _scan_folder(root: Path, subset: str, split: bool = False) -> List[Clip]:
    folder = root / subset
    if not folder.is_dir():
        return []
    clips = []
    for mp4 in sorted(folder.glob("*/*.mp4")):
        clips.append(
            Clip(_key_of(mp4, root), str(mp4), txt=str(mp4.with_suffix(".txt")), split=split)
        )
    return clips


def read_id_list(path: str) -> List[str]:
    """A list of ``[subset/]spk/id`` lines (first field of each line)."""
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def pick_dev(
    keys: Sequence[str], valid_list: Optional[str], dev_size: int
) -> Set[str]:
    """The dev part of the LRS3 trainval keys (``trainval/<spk>/<id>``).

    With ``valid_list`` (AV-HuBERT's ``lrs3-valid.id``): its keys. Without:
    whole speakers from the end of the sorted speaker list until at least
    ``dev_size`` utterances.
    """
    if valid_list:
        listed = {k if k.startswith("trainval/") else f"trainval/{k}" for k in read_id_list(valid_list)}
        chosen = set(keys) & listed
        logging.info(f"dev: {len(chosen)} of the {len(listed)} utterances of {valid_list}")
        return chosen
    by_speaker: Dict[str, List[str]] = {}
    for key in keys:
        by_speaker.setdefault(key.rsplit("/", 1)[0], []).append(key)
    chosen: Set[str] = set()
    for speaker in sorted(by_speaker, reverse=True):
        if len(chosen) >= dev_size:
            break
        chosen.update(by_speaker[speaker])
    logging.warning(
        f"dev: no valid list given; using the last trainval speakers ({len(chosen)} utterances)"
    )
    return chosen


def scan_raw(
    corpus: str, db_dir: str, valid_list: Optional[str] = None, dev_size: int = 1200
) -> Dict[str, List[Clip]]:
    """The clips of each set, raw layout."""
    root = Path(db_dir)
    if corpus == "lrs3":
        trainval = _scan_folder(root, "trainval")
        dev_keys = pick_dev([c.key for c in trainval], valid_list, dev_size)
        return {
            "train": _scan_folder(root, "pretrain", split=True)
            + [c for c in trainval if c.key not in dev_keys],
            "dev": [c for c in trainval if c.key in dev_keys],
            "test": _scan_folder(root, "test"),
        }
    if corpus == "lrs2":
        media = root / "mvlrs_v1" if (root / "mvlrs_v1").is_dir() else root

        def listed(name: str, subset: str, split: bool = False) -> List[Clip]:
            for folder in (root, media, media.parent):
                if (folder / name).exists():
                    keys = read_id_list(str(folder / name))
                    break
            else:
                raise FileNotFoundError(f"LRS2 list {name} not found in {root} or {media.parent}")
            return [
                Clip(
                    f"{subset}/{k}",
                    str(media / subset / f"{k}.mp4"),
                    txt=str(media / subset / f"{k}.txt"),
                    split=split,
                )
                for k in keys
            ]

        return {
            "train": listed("train.txt", "main") + listed("pretrain.txt", "pretrain", split=True),
            "dev": listed("val.txt", "main"),
            "test": listed("test.txt", "main"),
        }
    raise ValueError(f"unknown corpus {corpus!r} (lrs2 or lrs3)")


def find_label_csv(root: Path, dataset: str, subset: str, seg: int) -> Path:
    """``labels/<dataset>_<subset>_transcript_lengths_seg<seg>s.csv``, or
    the one variant of it there (e.g. Llama-AVSR's ``..._LLM_lowercase_25``)."""
    labels = root / "labels"
    exact = labels / f"{dataset}_{subset}_transcript_lengths_seg{seg}s.csv"
    if exact.exists():
        return exact
    found = sorted(labels.glob(f"{dataset}_{subset}_transcript_lengths_seg{seg}s*.csv"))
    if len(found) != 1:
        raise FileNotFoundError(
            f"need one {exact} (or variant); found {[str(p) for p in found]}: "
            "name the file with --train_csv / --dev_csv / --test_csv"
        )
    return found[0]


def read_label_csv(path: str, root: str) -> List[Clip]:
    """auto_avsr label lines -> clips (crops + their wav + transcript)."""
    clips = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(",", 4)
            if len(fields) < 3:
                raise ValueError(f"{path}:{n}: expected dataset,rel_path,input_length[,...]")
            dataset, rel_path = fields[0], fields[1]
            media = Path(root) / dataset / rel_path
            parts = Path(rel_path).with_suffix("").parts
            key = "/".join(parts[1:]) if len(parts) > 1 else parts[0]
            if len(fields) == 5:
                text = fields[4]
            else:
                txt = Path(root) / dataset / rel_path.replace("_video_seg", "_text_seg", 1)
                txt = txt.with_suffix(".txt")
                if not txt.exists():
                    raise FileNotFoundError(f"{path}:{n}: transcript {txt} not found")
                text = txt.read_text(encoding="utf-8").strip()
            wav = media.with_suffix(".wav")
            clips.append(
                Clip(key, str(media), text=text, audio=str(wav) if wav.exists() else None)
            )
    return clips


def scan_auto_avsr(
    corpus: str,
    db_dir: str,
    seg: int = 16,
    csvs: Optional[Dict[str, str]] = None,
    valid_list: Optional[str] = None,
    dev_size: int = 1200,
) -> Dict[str, List[Clip]]:
    """The clips of each set, auto_avsr layout."""
    root = Path(db_dir)
    csvs = dict(csvs or {})

    def label(name: str, subset: str) -> str:
        return csvs.get(name) or str(find_label_csv(root, corpus, subset, seg))

    if corpus == "lrs3":
        train = read_label_csv(label("train", "train"), db_dir)
        if csvs.get("dev"):
            dev = read_label_csv(csvs["dev"], db_dir)
            dev_keys = {c.key for c in dev}
        else:
            dev_keys = pick_dev(
                [c.key for c in train if c.key.startswith("trainval/")], valid_list, dev_size
            )
            dev = [c for c in train if c.key in dev_keys]
        return {
            "train": [c for c in train if c.key not in dev_keys],
            "dev": dev,
            "test": read_label_csv(label("test", "test"), db_dir),
        }
    if corpus == "lrs2":
        return {
            "train": read_label_csv(label("train", "train"), db_dir),
            "dev": read_label_csv(label("dev", "val"), db_dir),
            "test": read_label_csv(label("test", "test"), db_dir),
        }
    raise ValueError(f"unknown corpus {corpus!r} (lrs2 or lrs3)")


def detect_layout(corpus: str, db_dir: str) -> str:
    root = Path(db_dir)
    if (root / "labels").is_dir() and list((root / "labels").glob(f"{corpus}_*.csv")):
        return "auto_avsr"
    raw_marks = {"lrs3": ("pretrain", "trainval", "test"), "lrs2": ("main", "mvlrs_v1")}
    if any((root / d).is_dir() for d in raw_marks.get(corpus, ())):
        return "raw"
    raise FileNotFoundError(
        f"{db_dir} is neither a raw {corpus.upper()} release "
        f"({' / '.join(raw_marks.get(corpus, ()))} folders) nor an auto_avsr output "
        f"(labels/{corpus}_*.csv)"
    )


# --------------------------------------------------------------------- audio


def probe_duration(path: str) -> float:
    """Seconds of a media file's audio from its header (decodes if absent)."""
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1e6
    return len(decode_audio(path)) / SAMPLE_RATE


def decode_audio(path: str) -> np.ndarray:
    """A media file's first audio stream -> int16 (S,) 16 kHz mono."""
    import av

    chunks = []
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not chunks:
        raise ValueError(f"{path}: no audio samples")
    return np.concatenate(chunks).astype(np.int16)


def _clip_audio(job: Tuple[Clip, str, float]) -> Tuple[str, List[Utterance], str]:
    """One clip: its utterances (planning the pieces) and their wav files.

    Returns (clip id, utterances, error); on error no utterance.
    """
    clip, wav_dir, max_duration = job
    try:
        if clip.txt is not None:
            text, words = read_lrs_txt(clip.txt)
        else:
            text, words = clip.text or "", []
        if clip.split:
            pieces = plan_pieces(text, words, probe_duration(clip.media), max_duration)
            names = [f"{clip.clip_id}_{i:02d}" for i in range(len(pieces))]
        else:
            pieces, names = [Piece(0.0, 0.0, text, whole=True)], [clip.clip_id]
        utts = []
        for name, piece in zip(names, pieces):
            if clip.audio is not None and piece.whole:
                wav = clip.audio
            else:
                wav = os.path.join(wav_dir, f"{name}.wav")
            utts.append(
                Utterance(
                    name,
                    clip.clip_id,
                    clip.speaker,
                    normalize_text(piece.text),
                    os.path.abspath(wav),
                    None if piece.whole else frame_span(piece),
                )
            )
        missing = [u for u in utts if not os.path.exists(u.wav)]
        if missing:
            pcm = decode_audio(clip.media)
            for u in missing:
                if u.frames is None:
                    part = pcm
                else:
                    part = pcm[u.frames[0] * SAMPLES_PER_FRAME : u.frames[1] * SAMPLES_PER_FRAME]
                if len(part) == 0:
                    raise ValueError(f"piece {u.utt_id} lies past the end of the audio")
                write_wav(u.wav, part)
        return clip.clip_id, utts, ""
    except Exception as e:  # noqa: BLE001 - reported per clip, the run goes on
        return clip.clip_id, [], f"{type(e).__name__}: {e}"


def _run_jobs(fn, jobs: Sequence, nj: int) -> List:
    if nj <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=nj) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, min(64, len(jobs) // (4 * nj)))))


# --------------------------------------------------------------------- video


def run_crop_mouth(scp: str, outdir: str, out_scp: str, nj: int, size: int) -> None:
    """The default cropper: ``python -m espnet_mtsk.bin.crop_mouth``."""
    cmd = [
        sys.executable, "-m", "espnet_mtsk.bin.crop_mouth", "--scp", scp, "--outdir", outdir,
        "--out_scp", out_scp, "--nj", str(nj), "--size", str(size),
    ]  # fmt: skip
    logging.info("mouth crops: " + " ".join(cmd))
    failed_list = os.path.join(outdir, "failed.list")
    if os.path.exists(failed_list):
        os.unlink(failed_list)
    rc = subprocess.run(cmd).returncode
    # crop_mouth exits 1 when no video succeeded (e.g. a re-run of only the
    # clips that failed before); its failed.list then says why, per clip.
    if rc != 0 and not os.path.exists(failed_list):
        raise RuntimeError(f"crop_mouth failed (exit {rc}) and wrote no {failed_list}")


def _read_table(path: str) -> Dict[str, str]:
    table = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split(maxsplit=1)
                if fields:
                    table[fields[0]] = fields[1] if len(fields) > 1 else ""
    return table


def _load_frames(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    from espnet_mtsk.data.video import read_video

    return read_video(path)[0]


def _crop_file(stem: str) -> str:
    """A clip's crop: ``stem.npy``, or ``stem.mp4`` where only that exists."""
    if not os.path.exists(stem + ".npy") and os.path.exists(stem + ".mp4"):
        return stem + ".mp4"
    return stem + ".npy"


def _slice_video(job: Tuple[str, List[Tuple[str, int, int]], bool]) -> Tuple[str, str]:
    """Cuts one clip's crop (.npy or a video file) into its pieces' ``.npy``;
    -> (crop, error)."""
    from espnet_mtsk.data.video import write_video_npy

    crop, pieces, remove_crop = job
    try:
        todo = [p for p in pieces if not os.path.exists(p[0])]
        if todo:
            frames = _load_frames(crop)
            for out, first, last in todo:
                part = frames[first : min(last, len(frames))]
                if len(part) == 0:
                    raise ValueError(f"{out}: frames {first}-{last} past the crop's {len(frames)}")
                write_video_npy(out, part)
        if remove_crop and os.path.exists(crop):
            os.unlink(crop)
        return crop, ""
    except Exception as e:  # noqa: BLE001
        return crop, f"{type(e).__name__}: {e}"


def attach_crops(
    set_dir: str,
    clips: Dict[str, Clip],
    result: SetResult,
    cropper: Cropper,
    nj: int,
    size: int,
    keep_full_crops: bool,
) -> None:
    """Crops the clips that still need it and fills ``Utterance.video``;
    utterances of failed clips move to ``result.dropped``."""
    crop_dir = os.path.abspath(os.path.join(set_dir, "crops"))
    piece_dir = os.path.abspath(os.path.join(set_dir, "video"))
    os.makedirs(crop_dir, exist_ok=True)
    by_clip: Dict[str, List[Utterance]] = {}
    for u in result.utts:
        by_clip.setdefault(u.clip_id, []).append(u)
        if u.frames is None:
            u.video = _crop_file(os.path.join(crop_dir, u.clip_id))
        else:
            u.video = os.path.join(piece_dir, f"{u.utt_id}.npy")
    todo = sorted(c for c, us in by_clip.items() if any(not os.path.exists(u.video) for u in us))
    failed: Dict[str, str] = {}
    crops: Dict[str, str] = {}
    if todo:
        scp = os.path.join(set_dir, "raw_video.scp")
        out_scp = os.path.join(set_dir, "crops.scp")
        write_lines(scp, (f"{c} {os.path.abspath(clips[c].media)}" for c in todo))
        if os.path.exists(out_scp):
            os.unlink(out_scp)
        failed_list = os.path.join(crop_dir, "failed.list")
        if os.path.exists(failed_list):
            os.unlink(failed_list)
        cropper(scp, crop_dir, out_scp, nj, size)
        crops = _read_table(out_scp)
        for clip_id, reason in _read_table(failed_list).items():
            failed[clip_id] = "mouth crop failed" + (f": {reason}" if reason else "")
        for clip_id in todo:
            if clip_id not in failed and (
                clip_id not in crops or not os.path.exists(crops[clip_id])
            ):
                failed[clip_id] = "mouth crop missing from the cropper's output"
    jobs = []
    for clip_id in todo:
        if clip_id in failed:
            continue
        crop = crops[clip_id]
        pieces = [(u.video, *u.frames) for u in by_clip[clip_id] if u.frames is not None]
        for u in by_clip[clip_id]:
            if u.frames is None:
                u.video = os.path.abspath(crop)
        if pieces:
            os.makedirs(piece_dir, exist_ok=True)
            whole_used = any(u.frames is None for u in by_clip[clip_id])
            jobs.append((crop, pieces, not keep_full_crops and not whole_used))
    crop_of = {crops[c]: c for c in todo if c in crops}
    for crop, error in _run_jobs(_slice_video, jobs, nj):
        if error:
            failed[crop_of[crop]] = f"cutting the crop into pieces failed: {error}"
    keep = []
    for u in result.utts:
        if u.clip_id in failed:
            result.dropped[u.utt_id] = failed[u.clip_id]
        else:
            keep.append(u)
    result.utts = keep


# --------------------------------------------------------------------- lists


def write_data_dir(set_dir: str, result: SetResult) -> None:
    """wav.scp, video.scp, text, utt2spk, spk2utt (sorted) and ``dropped``."""
    os.makedirs(set_dir, exist_ok=True)
    utts = sorted(result.utts, key=lambda u: u.utt_id)
    ids = [u.utt_id for u in utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{set_dir}: duplicate utterance ids {dup[:5]}")
    for u in utts:
        for path in (u.wav, u.video):
            if path is not None and any(ch.isspace() for ch in path):
                raise ValueError(f"{u.utt_id}: path {path!r} has white space (Kaldi lists split on it)")
    write_lines(os.path.join(set_dir, "wav.scp"), (f"{u.utt_id} {u.wav}" for u in utts))
    if all(u.video is not None for u in utts):
        write_lines(os.path.join(set_dir, "video.scp"), (f"{u.utt_id} {u.video}" for u in utts))
    write_lines(os.path.join(set_dir, "text"), (f"{u.utt_id} {u.text}" for u in utts))
    write_lines(os.path.join(set_dir, "utt2spk"), (f"{u.utt_id} {u.speaker}" for u in utts))
    spk2utt: Dict[str, List[str]] = {}
    for u in utts:
        spk2utt.setdefault(u.speaker, []).append(u.utt_id)
    write_lines(
        os.path.join(set_dir, "spk2utt"), (f"{s} {' '.join(v)}" for s, v in sorted(spk2utt.items()))
    )
    write_lines(
        os.path.join(set_dir, "dropped"), (f"{k} {v}" for k, v in sorted(result.dropped.items()))
    )


def prepare(
    corpus: str,
    db_dir: str,
    data_dir: str,
    layout: str = "auto",
    sets: Sequence[str] = SETS,
    nj: int = 1,
    max_duration: float = MAX_DURATION,
    crop_size: int = 88,
    cropper: Optional[Cropper] = run_crop_mouth,
    valid_list: Optional[str] = None,
    dev_size: int = 1200,
    seg: int = 16,
    csvs: Optional[Dict[str, str]] = None,
    keep_full_crops: bool = False,
) -> Dict[str, SetResult]:
    """Writes ``data_dir/<set>`` for each set; returns what each holds.

    ``cropper`` (raw layout) makes the mouth crops, see :data:`Cropper`;
    None writes no ``video.scp`` (audio only).
    """
    if layout == "auto":
        layout = detect_layout(corpus, db_dir)
    logging.info(f"{corpus} at {db_dir}: {layout} layout")
    if layout == "raw":
        clips_of = scan_raw(corpus, db_dir, valid_list, dev_size)
    elif layout == "auto_avsr":
        clips_of = scan_auto_avsr(corpus, db_dir, seg, csvs, valid_list, dev_size)
    else:
        raise ValueError(f"unknown layout {layout!r} (auto, raw, auto_avsr)")
    results = {}
    for name in sets:
        set_dir = os.path.join(data_dir, name)
        wav_dir = os.path.join(set_dir, "wav")
        os.makedirs(wav_dir, exist_ok=True)
        removed = remove_temp_files(set_dir)
        if removed:
            logging.info(f"{set_dir}: removed {removed} temporary files of an interrupted run")
        clips = {c.clip_id: c for c in clips_of[name]}
        if len(clips) != len(clips_of[name]):
            raise ValueError(f"{name}: two clips share an id")
        result = SetResult()
        jobs = [(c, wav_dir, max_duration) for c in clips.values()]
        for clip_id, utts, error in _run_jobs(_clip_audio, jobs, nj):
            if error:
                result.dropped[clip_id] = error
            for u in utts:
                if u.text:
                    result.utts.append(u)
                else:
                    result.dropped[u.utt_id] = "empty transcript"
        if layout == "auto_avsr":
            for u in result.utts:
                u.video = os.path.abspath(clips[u.clip_id].media)
        elif cropper is not None:
            attach_crops(set_dir, clips, result, cropper, nj, crop_size, keep_full_crops)
        write_data_dir(set_dir, result)
        for key, reason in sorted(result.dropped.items()):
            logging.warning(f"{name}: dropped {key}: {reason}")
        logging.info(
            f"{set_dir}: {len(result.utts)} utterances from {len(clips)} clips; "
            f"{len(result.dropped)} dropped (listed in {set_dir}/dropped)"
        )
        results[name] = result
    return results


def make_noisy_copies(
    src_dir: str, noise_wav: str, snrs: Sequence[float], seed: int = 0
) -> List[str]:
    """``data/test`` -> ``data/test_snr<N>`` for each SNR (dB): the same
    utterances, video and text, the audio mixed with ``noise_wav`` (babble)
    at that SNR from an offset drawn per utterance (reproducible, the same
    for any run). Returns the new dirs; finished wavs are kept."""
    import zlib

    import soundfile

    from espnet_mtsk.data.augment import mix_at_snr
    from espnet_mtsk.data.synthgrid.files import to_pcm16

    noise, rate = soundfile.read(noise_wav, dtype="float32")
    if rate != SAMPLE_RATE or noise.ndim != 1:
        raise ValueError(f"{noise_wav}: expected 16 kHz mono, got {rate} Hz, shape {noise.shape}")
    src = src_dir.rstrip("/")
    wavs = _read_table(os.path.join(src, "wav.scp"))
    made = []
    for snr in snrs:
        out = f"{src}_snr{snr:g}"
        wav_dir = os.path.abspath(os.path.join(out, "wav"))
        os.makedirs(wav_dir, exist_ok=True)
        remove_temp_files(out)
        table = {}
        for utt, path in sorted(wavs.items()):
            table[utt] = os.path.join(wav_dir, f"{utt}.wav")
            if os.path.exists(table[utt]):
                continue
            speech, _ = soundfile.read(path, dtype="float32")
            rng = np.random.default_rng([seed, zlib.crc32(utt.encode()), int(round(snr * 100)) % 2**31])
            write_wav(table[utt], to_pcm16(mix_at_snr(speech, noise, snr, rng)))
        write_lines(os.path.join(out, "wav.scp"), (f"{k} {v}" for k, v in table.items()))
        for name in ("video.scp", "text", "utt2spk", "spk2utt"):
            if os.path.exists(os.path.join(src, name)):
                with open(os.path.join(src, name), encoding="utf-8") as f:
                    write_lines(os.path.join(out, name), f.read().splitlines())
        logging.info(f"{out}: {len(table)} utterances with babble at {snr:g} dB")
        made.append(out)
    return made


def main(cmd: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", choices=["lrs2", "lrs3"], required=True)
    parser.add_argument("--db_dir", required=True, help="the corpus, raw or auto_avsr output")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--layout", choices=["auto", "raw", "auto_avsr"], default="auto")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--nj", type=int, default=4)
    parser.add_argument("--max_duration", type=float, default=MAX_DURATION,
                        help="pretrain clips longer than this are cut (s)")  # fmt: skip
    parser.add_argument("--crop_size", type=int, default=88, help="mouth crop side (raw)")
    parser.add_argument("--no_video", action="store_true", help="raw: no mouth crops, audio only")
    parser.add_argument("--keep_full_crops", action="store_true",
                        help="raw: keep the crop of a cut clip after its pieces are written")  # fmt: skip
    parser.add_argument("--valid_list", default=None,
                        help="LRS3 dev ids (AV-HuBERT's lrs3-valid.id)")  # fmt: skip
    parser.add_argument("--dev_size", type=int, default=1200,
                        help="LRS3 dev size without --valid_list (whole last speakers)")  # fmt: skip
    parser.add_argument("--seg_duration", type=int, default=16,
                        help="auto_avsr: the segNs in the label file names")  # fmt: skip
    for name in SETS:
        parser.add_argument(f"--{name}_csv", default=None, help=f"auto_avsr: {name} label file")
    parser.add_argument("--noise_wav", default=None,
                        help="babble (16 kHz mono wav) for noisy test copies test_snr<N>")  # fmt: skip
    parser.add_argument("--noisy_snrs", type=float, nargs="*", default=[],
                        help="SNRs (dB) of the noisy test copies")  # fmt: skip
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    prepare(
        args.corpus,
        args.db_dir,
        args.data_dir,
        layout=args.layout,
        sets=args.sets,
        nj=args.nj,
        max_duration=args.max_duration,
        crop_size=args.crop_size,
        cropper=None if args.no_video else run_crop_mouth,
        valid_list=args.valid_list,
        dev_size=args.dev_size,
        seg=args.seg_duration,
        csvs={n: getattr(args, f"{n}_csv") for n in SETS if getattr(args, f"{n}_csv")},
        keep_full_crops=args.keep_full_crops,
    )
    if args.noise_wav and args.noisy_snrs and "test" in args.sets:
        make_noisy_copies(os.path.join(args.data_dir, "test"), args.noise_wav, args.noisy_snrs)


if __name__ == "__main__":
    main()
