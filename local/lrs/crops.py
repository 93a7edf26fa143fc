"""LRS2 / LRS3 video (raw layout): mouth crops of the clips, by
``python -m espnet_mtsk.bin.crop_mouth`` or a given cropper, and the pieces
of cut clips sliced from their clip's crop."""

import logging
import os
import subprocess
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np
from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.data.video import read_video, write_video_npy
from espnet_mtsk.fileio import write_lines
from local.lrs.audio import SetResult, Utterance, run_jobs
from local.lrs.layouts import Clip

# cropper(scp, outdir, out_scp, nj, size): the interface of
# ``python -m espnet_mtsk.bin.crop_mouth``: reads ``id path`` lines, writes
# ``outdir/<id>.npy`` (or ``<id>.mp4``: crop_mouth --format mp4), an scp of
# the successes and ``outdir/failed.list``. Pieces are cut into ``.npy``.
Cropper = Callable[[str, str, str, int, int], None]


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


def read_table(path: str) -> Dict[str, str]:
    """``key value`` lines -> {key: value}; {} when there is no file."""
    return read_2columns_text(path) if os.path.exists(path) else {}


def load_frames(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path)
    return read_video(path)[0]


def _crop_file(stem: str) -> str:
    """A clip's crop: ``stem.npy``, or ``stem.mp4`` where only that exists."""
    if not os.path.exists(stem + ".npy") and os.path.exists(stem + ".mp4"):
        return stem + ".mp4"
    return stem + ".npy"


def _slice_video(job: Tuple[str, List[Tuple[str, int, int]], bool]) -> Tuple[str, str]:
    """Cuts one clip's crop (.npy or a video file) into its pieces' ``.npy``;
    -> (crop, error)."""
    crop, pieces, remove_crop = job
    try:
        todo = [p for p in pieces if not os.path.exists(p[0])]
        if todo:
            frames = load_frames(crop)
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
        crops = read_table(out_scp)
        for clip_id, reason in read_table(failed_list).items():
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
    for crop, error in run_jobs(_slice_video, jobs, nj):
        if error:
            failed[crop_of[crop]] = f"cutting the crop into pieces failed: {error}"
    keep = []
    for u in result.utts:
        if u.clip_id in failed:
            result.dropped[u.utt_id] = failed[u.clip_id]
        else:
            keep.append(u)
    result.utts = keep
