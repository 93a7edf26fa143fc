"""ESPnet ASR-task models decoded beside a Matryoshka model (avsr.sh stage
16): their experiment folders, scores and RESULTS.md rows.

A baseline folder holds ``baseline.json`` (``label``, the row name;
``task``, ``asr``, ``vsr`` or ``avsr``: the inputs it reads; ``model``,
the zoo name or zip) and ``decode/<test_set>/<label>/`` as
``espnet_mtsk.bin.zip_inference`` writes it, with ``model.json`` (its
parameter counts). Scoring is ``espnet_mtsk.reporting.scoring.score_dir``, the
Matryoshka model's, so both are normalised alike.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from espnet_mtsk.reporting.scoring import Score, score_dir

TASKS = ("asr", "vsr", "avsr")


@dataclass
class Baseline:
    label: str
    task: str
    model: str
    exp_dir: Path
    parameters: int
    trainable_parameters: int

    def decode_dir(self, test_set: str) -> Path:
        return self.exp_dir / "decode" / test_set / self.label


def _read_json(path: Path) -> Dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read it ({e})") from e


def read_baseline(exp_dir: Path) -> Baseline:
    """The baseline of a stage-16 folder; errors name the file at fault."""
    meta = _read_json(exp_dir / "baseline.json")
    missing = {"label", "task", "model"} - set(meta)
    if missing:
        raise ValueError(f"{exp_dir / 'baseline.json'} lacks {sorted(missing)}")
    if meta["task"] not in TASKS:
        raise ValueError(f"{exp_dir / 'baseline.json'}: task '{meta['task']}' is not one of {TASKS}")
    counts = sorted((exp_dir / "decode").glob(f"*/{meta['label']}/model.json"))
    if not counts:
        raise ValueError(f"{exp_dir}/decode: no decoding of '{meta['label']}' with its model.json")
    sizes = _read_json(counts[0])
    return Baseline(
        label=meta["label"],
        task=meta["task"],
        model=meta["model"],
        exp_dir=exp_dir,
        parameters=int(sizes["parameters"]),
        trainable_parameters=int(sizes["trainable_parameters"]),
    )


def score_baselines(
    exp_dirs: Sequence[Path], data_dir: Path, test_sets: Sequence[str]
) -> List[Tuple[Baseline, List[Score]]]:
    """Each baseline with its scores on the test sets it was decoded on."""
    out = []
    for exp_dir in exp_dirs:
        baseline = read_baseline(Path(exp_dir))
        scores = [
            score_dir(data_dir / test_set / "text", baseline.decode_dir(test_set), test_set, baseline.label)
            for test_set in test_sets
            if baseline.decode_dir(test_set).is_dir()
        ]
        out.append((baseline, scores))
    return out


def baselines_markdown(baselines: Sequence[Tuple[Baseline, List[Score]]]) -> str:
    """What the baseline rows of RESULTS.md are: one line per model."""
    lines = ["ESPnet models (their rows' scale column names them; tokens/s: the "
             "encoder frames per second of speech their decoder attends to):", ""]
    lines += [
        f"- `{b.label}` ({b.task.upper()}): `{b.model}`, {b.trainable_parameters:,} "
        f"trainable parameters of {b.parameters:,}"
        for b, _ in baselines
    ]
    return "\n".join(lines) + "\n"
