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

``python -m local.lrs.prepare --corpus lrs3 --db_dir $LRS3 --data_dir data
--nj 8 --valid_list local/lrs3-valid.id`` (see ``--help``).
"""

import argparse
import logging
import os
from typing import Dict, Optional, Sequence

from espnet_mtsk.fileio import remove_temp_files, write_data_dir, write_lines
from local.lrs.audio import SetResult, clip_audio, make_noisy_copies, run_jobs
from local.lrs.crops import Cropper, attach_crops, run_crop_mouth
from local.lrs.layouts import detect_layout, scan_auto_avsr, scan_raw
from local.lrs.transcripts import MAX_DURATION

SETS = ("train", "dev", "test")


def write_set(set_dir: str, result: SetResult) -> None:
    """The set's data dir (``fileio.write_data_dir``; ``video.scp`` when
    every utterance has video) and ``dropped`` (``id reason``)."""
    ids = [u.utt_id for u in result.utts]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{set_dir}: duplicate utterance ids {dup[:5]}")
    tables = {
        "wav.scp": {u.utt_id: u.wav for u in result.utts},
        "text": {u.utt_id: u.text for u in result.utts},
        "utt2spk": {u.utt_id: u.speaker for u in result.utts},
    }
    if all(u.video is not None for u in result.utts):
        tables["video.scp"] = {u.utt_id: u.video for u in result.utts}
    write_data_dir(set_dir, tables)
    write_lines(os.path.join(set_dir, "dropped"), (f"{k} {v}" for k, v in sorted(result.dropped.items())))


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
        for clip_id, utts, error in run_jobs(clip_audio, jobs, nj):
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
        write_set(set_dir, result)
        for key, reason in sorted(result.dropped.items()):
            logging.warning(f"{name}: dropped {key}: {reason}")
        logging.info(
            f"{set_dir}: {len(result.utts)} utterances from {len(clips)} clips; "
            f"{len(result.dropped)} dropped (listed in {set_dir}/dropped)"
        )
        results[name] = result
    return results


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
