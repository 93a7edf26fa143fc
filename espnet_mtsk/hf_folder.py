"""Local Hugging Face folders (and pretrained weight files): where they are,
whether they are whole, and whether they are the ones a model was trained
with.

A packed model that does not carry a large pretrained folder records a
*reference* to it (see ``espnet_mtsk.tasks.pack``): the config option that
names it, its path and origin (hub id or URL) on the packing machine, and a
fingerprint of its weight files (size and sha256 of each). ``find_pretrained``
finds the same weights on this machine or says which folder differs and
where to get it. A training records the same of every source it starts from
(``espnet_mtsk.tasks.checkpoint.record_pretrained``).
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_mtsk.fileio import write_lines

# The files whose bytes are a folder's weights; the others (configs,
# tokenizers) are read by the loaders, which check their shapes.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# huggingface_hub's cache layout: <cache>/models--<org>--<name>/snapshots/<revision>
_HUB_SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/(?P<revision>[^/]+)")


def resolve_folder(path: str, required: Sequence[str], what: str) -> Path:
    """The folder of ``path`` (a folder, or a file inside it such as the
    ``config.json`` a packed model points at), after checking that it holds
    every file of ``required``. Errors name the folder and the missing files.
    """
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    missing = [name for name in required if not (folder / name).exists()]
    if missing:
        raise FileNotFoundError(f"{what} folder {folder} lacks {', '.join(missing)}")
    return folder


def total_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def weight_files(path: Path) -> Dict[str, Path]:
    """A weight file itself, or a folder's weight files (every file when it
    has none of WEIGHT_SUFFIXES), keyed by their path inside the folder."""
    if path.is_file():
        return {path.name: path}
    files = sorted(f for f in path.rglob("*") if f.is_file())
    weights = [f for f in files if f.suffix in WEIGHT_SUFFIXES] or files
    return {f.relative_to(path).as_posix(): f for f in weights}


def hub_origin(path: Path) -> Tuple[Optional[str], Optional[str]]:
    """(hub id, revision) of a folder in huggingface_hub's cache, else Nones."""
    match = _HUB_SNAPSHOT.search(Path(path).resolve().as_posix())
    if match is None:
        return None, None
    return match["repo"].replace("--", "/"), match["revision"]


def fingerprint(path: Path) -> Dict[str, Dict]:
    """{name: {size, sha256}} of the weight files of ``path``."""
    return {
        name: {"size": f.stat().st_size, "sha256": sha256(f)}
        for name, f in weight_files(path).items()
    }


def weights_record(path: Path) -> Dict:
    """What ``differences`` compares a place with: the ``kind`` of ``path``
    (file or folder) and the ``fingerprint`` of its ``weights``."""
    return {"kind": "file" if path.is_file() else "folder", "weights": fingerprint(path)}


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "espnet_mtsk" / "sha256.json"


def sha256(path: Path) -> str:
    """The file's sha256. Hashing gigabytes takes seconds, so digests are
    kept in ``$XDG_CACHE_HOME/espnet_mtsk/sha256.json`` and reused while the
    file's path, inode, size and modification time stay the same."""
    stat = path.stat()
    key = str(path.resolve())
    stamp = [stat.st_ino, stat.st_size, stat.st_mtime_ns]
    cache_file = _cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if entry is not None and entry["stamp"] == stamp:
        return entry["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    # Every training hashes its sources: entries of files gone (a test's
    # or an experiment's copies) would pile up. A file whose folder is not
    # here either may be on another machine sharing this home: kept.
    cache = {k: v for k, v in cache.items() if os.path.exists(k) or not os.path.isdir(os.path.dirname(k))}
    cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_lines(cache_file, [json.dumps(cache)])
    except OSError:
        pass  # a read-only home: the digest is recomputed next time
    return cache[key]["sha256"]


def differences(reference: Dict, candidate: Path, recorder: str = "the packed model") -> List[str]:
    """Why ``candidate`` does not hold the weights of ``reference`` (a
    ``weights_record``) that ``recorder`` recorded: "not found", or one entry
    per weight file that differs (empty: it does)."""
    if not candidate.exists():
        return ["not found"]
    folder = candidate if candidate.is_dir() else candidate.parent
    if reference["kind"] == "file":
        files = {name: candidate for name in reference["weights"]} if candidate.is_file() else {}
    else:
        files = {name: folder / name for name in reference["weights"]}
    problems = []
    for name, want in reference["weights"].items():
        f = files.get(name)
        if f is None or not f.is_file():
            problems.append(f"{name} missing")
        elif f.stat().st_size != want["size"]:
            problems.append(f"{name} has {f.stat().st_size} bytes, {recorder}'s {want['size']}")
    if problems:
        return problems
    return [
        f"{name}: sha256 {sha256(files[name])[:12]}... differs from {recorder}'s {want['sha256'][:12]}..."
        for name, want in reference["weights"].items()
        if sha256(files[name]) != want["sha256"]
    ]


def _hub_snapshot(reference: Dict) -> Optional[Path]:
    """The reference's folder in this machine's huggingface_hub cache."""
    origin = reference.get("origin")
    if not origin or "://" in origin:
        return None
    from huggingface_hub import snapshot_download

    try:
        folder = Path(
            snapshot_download(origin, revision=reference.get("revision"), local_files_only=True)
        )
    except Exception:  # not cached, or not a hub id: the error lists the places tried
        return None
    return folder / Path(reference["original"]).name if reference["kind"] == "file" else folder


def where_to_get(reference: Dict) -> str:
    origin, revision = reference.get("origin"), reference.get("revision")
    if origin and "://" in origin:
        return f"Download it from {origin}"
    if origin:
        return f"Download it with `huggingface-cli download {origin}" + (
            f" --revision {revision}`" if revision else "`"
        )
    return f"Copy {reference['original']} from the machine that packed the model"


def find_pretrained(reference: Dict, given: Optional[str] = None) -> str:
    """The place on this machine of the weights a packed model references:
    ``given`` (the user's ``--pretrained_dir``) when set, else the path the
    model was packed with or the hub cache's copy of its origin, whichever
    holds weight files of the recorded sizes and sha256 first. Otherwise a
    FileNotFoundError names the config option and the folder, says what
    differs in each place tried and where to get the right one."""
    candidates = [Path(given)] if given else [Path(reference["original"])]
    if not given:
        snapshot = _hub_snapshot(reference)
        if snapshot is not None:
            candidates.append(snapshot)
    tried = []
    for candidate in candidates:
        problems = differences(reference, candidate)
        if not problems:
            return str(candidate)
        tried.append(f"  {candidate}: {'; '.join(problems)}")
    size = sum(w["size"] for w in reference["weights"].values())
    origin = f", {reference['origin']}" if reference.get("origin") else ""
    raise FileNotFoundError(
        f"{reference['option']}: the packed model needs the pretrained {reference['kind']} "
        f"{reference['original']} ({len(reference['weights'])} weight files, "
        f"{size / 1e9:.2f} GB{origin}), and no place checked holds the same weights:\n"
        + "\n".join(tried)
        + f"\n{where_to_get(reference)}, then give its place "
        f"with --pretrained_dir {reference['option']}=PATH (Python: "
        f"pretrained_dirs={{'{reference['option']}': PATH}})."
    )
