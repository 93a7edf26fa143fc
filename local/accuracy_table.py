#!/usr/bin/env python3
"""The accuracy table of the paper's comparison, from scored recipe decodings.

Each experiment named on the command line (``exp/asr_<tag>``, trained and
decoded by ``egs2/synthgrid/avsr1/run_compare.sh``) is classed by its
config: one scale = a per-rate model, several = a Matryoshka model with its
LoRA strategy, for one task or (mode all) for every task. For every test
set and compressor, writes one markdown table: WER (%) per scale for the
per-rate models and each Matryoshka variant (the mean over seeds, with the
spread when there are several), and the gap of the best Matryoshka variant
to the per-rate model, with the spread of its per-seed differences; then
each variant's gap averaged over its cells, per seed. Training cost is
bench/train_step.py's: wall times of recipe runs depend on what else the
machine runs. ``--baselines`` adds a table of ESPnet models decoded beside
them (avsr.sh stage 16 folders, e.g. those of run_baseline.sh): WER per
test set, decoder tokens per second, RTF and trainable parameters.

    python -m local.accuracy_table --exp_dir exp --data_dir dump/raw \
        --test_sets test_clean test_snr0 --scales a3 v3 a3_v3 --out results.md TAG... \
        [--decode_tag decode_decode_valid.acc.ave] \
        [--baselines exp/asr_zip_espnet_a2_v1 exp/asr_zip_espnet_a12_v6]
"""

import argparse
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml
from scipy import stats

from espnet_mtsk.reporting.baselines import score_baselines
from espnet_mtsk.reporting.scoring import score_dir
from espnet_mtsk.scales import config_scales

# lora none: no adapters, the whole LLM trains (the SynthGRID recipe's model).
LORA_NAMES = {"ms": "MS-LoRA", "ss": "SS-LoRA", "mss": "MSS-LoRA", "none": "whole LLM"}
ALL_TASKS = ", all tasks"  # one model for ASR, VSR and AVSR (mode: all)
TARGET_GAP = 0.3  # issue 5's bound on Matryoshka WER minus per-rate WER, per cell
MEAN_GAP_BOUND = 0.5  # issue 10's bound on that gap averaged over the cells


def variant_of(conf: dict) -> Tuple[str, str, List[str]]:
    """(compressor, variant, scale ids) of an experiment's config.yaml."""
    scales = [s.id for s in config_scales(conf["model_conf"])]
    if len(scales) == 1:
        variant = "per-rate"
    else:
        variant = LORA_NAMES.get(conf["lora"] or "none", conf["lora"])
        if conf["model_conf"]["mode"] == "all":
            variant += ALL_TASKS
    return conf["compressor"], variant, scales


def check_finished(exp: Path) -> None:
    # run.sh's launcher writes the accounting line when training has ended.
    if not re.search(r"^# Accounting: time=", (exp / "train.log").read_text(), re.M):
        raise ValueError(f"{exp / 'train.log'} has no accounting line: did training finish?")


def decoding(exp: Path, decode_tag: Optional[str]) -> Path:
    """The folder of ``exp``'s decoding to score: ``exp/<decode_tag>``, or
    with no tag its only ``decode_*`` folder. avsr.sh makes one per
    inference config and model (decode_<config>_<model>), so with several
    and none named, none is picked: an error lists them."""
    decodes = sorted(p.name for p in exp.glob("decode_*") if p.is_dir())
    if decode_tag:
        if not (exp / decode_tag).is_dir():
            raise ValueError(f"{exp / decode_tag}: no such decoding (there are {' '.join(decodes) or 'none'})")
        return exp / decode_tag
    if not decodes:
        raise ValueError(f"{exp} has no decode_* directory: run stage 12 first")
    if len(decodes) > 1:
        raise ValueError(f"{exp} has {len(decodes)} decodings, {' '.join(decodes)}: name one with --decode_tag")
    return exp / decodes[0]


def collect(exp_dir: Path, data_dir: Path, tags: List[str], test_sets: List[str], decode_tag: Optional[str] = None):
    """(WERs as {(test set, compressor, variant, scale): {seed: WER}}, the
    epochs every experiment trained), from each experiment's decoding
    ``decode_tag`` (see ``decoding``). Models trained for different lengths
    (config.yaml's max_epoch) are not one comparison: an error naming them."""
    wers: Dict[Tuple, Dict[int, float]] = defaultdict(dict)
    epochs: Dict[int, List[str]] = defaultdict(list)
    for tag in tags:
        exp = exp_dir / f"asr_{tag}"
        check_finished(exp)
        conf = yaml.safe_load((exp / "config.yaml").read_text())
        epochs[conf.get("max_epoch")].append(tag)
        compressor, variant, scales = variant_of(conf)
        seed = conf.get("seed", 0)
        decode_dir = decoding(exp, decode_tag)
        for test_set in test_sets:
            for scale in scales:
                key = test_set, compressor, variant, scale
                if seed in wers[key]:
                    raise ValueError(f"{exp}: a second {variant} {compressor} model with seed {seed}")
                score = score_dir(data_dir / test_set / "text", decode_dir / test_set / scale, test_set, scale)
                wers[key][seed] = score.wer
    if len(epochs) > 1:
        raise ValueError("models trained for different epochs: " + "; ".join(
            f"{n}: {' '.join(names)}" for n, names in sorted(epochs.items(), key=str)))
    return wers, next(iter(epochs))


def mean_std(values, sign: str = "") -> str:
    """``mean ± std`` to one decimal (the mean alone for one value); ``sign``
    "+" prints the mean's sign."""
    values = list(values)
    text = f"{statistics.mean(values):{sign}.1f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.1f}"
    return text


def differences(mtsk: Dict[int, float], per_rate: Dict[int, float]) -> Dict[int, float]:
    """Matryoshka minus per-rate WER for each seed that has both."""
    return {s: mtsk[s] - per_rate[s] for s in mtsk.keys() & per_rate.keys()}


def cell(values: Dict[int, float], seeds: int) -> str:
    """Mean (± std) over the seeds run; ``(n=k)`` when fewer than ``seeds``."""
    if not values:
        return "—"
    text = mean_std(values.values())
    if len(values) < seeds:
        text += f" (n={len(values)})"
    return text


def gap_cell(best: Dict[int, float], per_rate: Dict[int, float]) -> Tuple[float, str]:
    """Difference of the means, ± the spread of the per-seed differences
    when two or more seeds have both models."""
    gap = statistics.mean(best.values()) - statistics.mean(per_rate.values())
    paired = list(differences(best, per_rate).values())
    spread = f" ± {statistics.stdev(paired):.1f}" if len(paired) > 1 else ""
    return gap, f"{gap:+.1f}{spread}"


def markdown(wers, test_sets, scales, command, epochs) -> str:
    compressors = sorted({k[1] for k in wers})
    names = list(LORA_NAMES.values()) + [v + ALL_TASKS for v in LORA_NAMES.values()]
    variants = ["per-rate"] + [v for v in names if any(k[2] == v for k in wers)]
    seeds = max(len(v) for v in wers.values())
    seed_text = f"mean ± std over {seeds} seeds (n=k: a cell with only k of them)" if seeds > 1 else "one seed"
    out = [
        "# Matryoshka vs per-rate models on SynthGRID",
        "",
        "WER (%) on the unseen test voices, "
        f"{seed_text}. "
        "Per-rate: one model per scale (the Llama-AVSR baseline). MS / SS / MSS: "
        "a Matryoshka model per task (ASR, VSR or AVSR: every rate of that task, "
        "as in the paper) with one LoRA for all its scales, one per scale, or both; "
        f"'{ALL_TASKS[2:]}': one Matryoshka model for the scales of every task. "
        f"Same data, stand-in LLM, pre-trained encoders, steps (max_epoch {epochs}) and seeds for all. "
        "Gap: the best Matryoshka variant (of those with the most seeds) minus "
        f"per-rate (target: <= {TARGET_GAP}), ± the spread of its per-seed differences.",
        "",
        "Regenerate:",
        "",
        "```sh",
        command,
        "```",
    ]
    met = missed = 0
    for test_set in test_sets:
        for compressor in compressors:
            out += ["", f"## {test_set}, {compressor}", ""]
            out.append("| scale | " + " | ".join(variants) + " | gap |")
            out.append("|---" * (len(variants) + 2) + "|")
            for scale in scales:
                values = {v: wers.get((test_set, compressor, v, scale), {}) for v in variants}
                row = [scale] + [cell(values[v], seeds) for v in variants]
                mtsk = [values[v] for v in variants[1:] if values[v]]
                if values["per-rate"] and mtsk:
                    # Among the variants with the most seeds: the minimum over
                    # single noisy runs would favour the lucky one.
                    most = max(map(len, mtsk))
                    best = min((v for v in mtsk if len(v) == most), key=lambda v: statistics.mean(v.values()))
                    gap, text = gap_cell(best, values["per-rate"])
                    met += gap <= TARGET_GAP
                    missed += gap > TARGET_GAP
                    row.append(text)
                else:
                    row.append("—")
                out.append("| " + " | ".join(row) + " |")
    out += ["", f"Target met at {met} of {met + missed} (test set, compressor, scale) cells."]
    out += mean_gaps(wers, test_sets, scales, compressors, variants[1:])
    return "\n".join(out) + "\n"


def confidence(gaps: List[float]) -> Tuple[float, float]:
    """(standard error, half-width of the 95 % confidence interval, Student's
    t) of the mean of two or more per-seed values."""
    sem = statistics.stdev(gaps) / len(gaps) ** 0.5
    return sem, sem * stats.t.ppf(0.975, len(gaps) - 1)


def verdict(mean: float, half_width: float, bound: float) -> str:
    """Whether the mean gap is within ``bound`` (or better), by where the
    95 % interval lies: below the bound, above it, or across it."""
    if mean + half_width <= bound:
        return "yes"
    if mean - half_width > bound:
        return "no"
    return "can't tell"


def mean_gaps(wers, test_sets, scales, compressors, variants) -> List[str]:
    """Each variant's gap to per-rate averaged over its cells, per seed: one
    cell's gap is within run-to-run noise, the average over many much less.
    The seeds' spread of that average gives its standard error and 95 %
    interval, which say whether it is within MEAN_GAP_BOUND."""
    out = [
        "",
        "## Mean gap per variant",
        "",
        "Matryoshka minus per-rate WER averaged over the (test set, scale) cells "
        "of the variant run with the most seeds, for each of those seeds; mean ± std over them, "
        "the standard error of that mean and its 95 % confidence interval (Student's t). "
        f"Within {MEAN_GAP_BOUND}: whether the interval lies below {MEAN_GAP_BOUND} points (yes), "
        "above (no) or across it (can't tell).",
        "",
        f"| compressor | variant | cells | seeds | mean gap | std err | 95 % interval | within {MEAN_GAP_BOUND} | per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for compressor in compressors:
        for variant in variants:
            paired = {}  # (test set, scale) -> {seed: Matryoshka - per-rate}
            for test_set in test_sets:
                for scale in scales:
                    mtsk = wers.get((test_set, compressor, variant, scale), {})
                    rate = wers.get((test_set, compressor, "per-rate", scale), {})
                    if diffs := differences(mtsk, rate):
                        paired[test_set, scale] = diffs
            if not paired:
                continue
            # Every seed averages the same cells: those run with the most seeds.
            seeds = max((frozenset(d) for d in paired.values()), key=len)
            cells = [d for d in paired.values() if seeds <= d.keys()]
            gaps = [statistics.mean(d[s] for d in cells) for s in sorted(seeds)]
            error = ["—", "—", "—"]
            if len(gaps) > 1:
                mean, (sem, half) = statistics.mean(gaps), confidence(gaps)
                error = [f"{sem:.2f}", f"{mean - half:+.1f} to {mean + half:+.1f}", verdict(mean, half, MEAN_GAP_BOUND)]
            out.append(
                f"| {compressor} | {variant} | {len(cells)} | {len(gaps)} | {mean_std(gaps, '+')} | "
                + " | ".join(error) + " | " + ", ".join(f"{g:+.1f}" for g in gaps) + " |"
            )
    return out


def baseline_table(baselines, test_sets) -> List[str]:
    """One row per ESPnet model: its cost (as measured on its first test
    set) and WER per test set."""
    out = [
        "",
        "## ESPnet models on the same data",
        "",
        "ESPnet's ASR task (CTC/attention, its trainer and beam search) decoded by "
        "avsr.sh stage 16. tokens/s: encoder frames per second of speech its decoder "
        "attends to (the Matryoshka models': audio-visual tokens the LLM reads); "
        "RTF: decoding wall time over speech duration, frozen encoders included.",
        "",
        "| model | task | tokens/s | RTF | trainable parameters | " + " | ".join(test_sets) + " |",
        "|---" * (len(test_sets) + 5) + "|",
    ]
    for baseline, scores in baselines:
        if not scores:
            raise ValueError(f"{baseline.exp_dir}: no decoding of {' '.join(test_sets)}")
        wer = {s.dataset: f"{s.wer:.1f}" for s in scores}
        out.append(
            f"| {baseline.label} | {baseline.task.upper()} | {scores[0].tokens_per_sec:.1f} | "
            f"{scores[0].rtf:.3f} | {baseline.trainable_parameters:,} | "
            + " | ".join(wer.get(t, "—") for t in test_sets) + " |"
        )
    return out


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, required=True)
    parser.add_argument("--data_dir", type=Path, required=True, help="holds <test_set>/text")
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--scales", nargs="+", required=True, help="row order")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--command", default="", help="the command that regenerates the table")
    parser.add_argument("--decode_tag", help="each experiment's decoding to score, as avsr.sh names it "
                        "(decode_<inference config>_<model>); default: its only decode_* folder")
    parser.add_argument("--baselines", nargs="*", type=Path, default=[],
                        help="avsr.sh stage-16 folders of ESPnet models (espnet_mtsk.reporting.baselines)")
    parser.add_argument("tags", nargs="+", help="experiments exp_dir/asr_<tag>")
    args = parser.parse_args(cmd)
    wers, epochs = collect(args.exp_dir, args.data_dir, args.tags, args.test_sets, args.decode_tag)
    text = markdown(wers, args.test_sets, args.scales, args.command, epochs)
    if args.baselines:
        text += "\n".join(baseline_table(score_baselines(args.baselines, args.data_dir, args.test_sets), args.test_sets)) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
