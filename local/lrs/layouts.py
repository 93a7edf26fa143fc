"""Where the clips of an LRS2 / LRS3 copy are: the raw release or the
auto_avsr output (see ``local/lrs/prepare.py``), scanned into the clips of
each set."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set


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
