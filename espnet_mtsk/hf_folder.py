"""Local Hugging Face folders: where they are and whether they are whole."""

from pathlib import Path
from typing import Sequence


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
