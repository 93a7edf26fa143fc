"""The WER-vs-cost plot of RESULTS.md (``wer_vs_tokens.png``).

One panel per task (ASR, VSR, AVSR: the modalities a scale reads), a line
per test set within a panel through that task's scales sorted by tokens per
second, the scale ids as the x tick labels (each with its tokens/s), and
each ESPnet baseline as its own marker at its cost in the panel of its task,
and the per-utterance policy's points (``adaptive@<budget>``) as stars joined
by a dashed line in the AVSR panel.
"""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from espnet_mtsk.decoding.scale_request import is_adaptive
from espnet_mtsk.reporting.baselines import TASKS, Baseline
from espnet_mtsk.reporting.scoring import Score
from espnet_mtsk.scales import parse_scale

_MODALITIES = {("audio",): "asr", ("video",): "vsr", ("audio", "video"): "avsr"}
_MARKERS = "DsP^vX"


def task_of(scale_id: str) -> str:
    """``a4`` -> asr, ``v3`` -> vsr, ``a4_v3`` -> avsr."""
    return _MODALITIES[parse_scale(scale_id).modalities]


def plot_pareto(
    scores: Sequence[Score], png: Path, baselines: Sequence[Tuple[Baseline, List[Score]]] = ()
) -> None:
    """Writes ``build_figure``'s figure to ``png``."""
    import matplotlib.pyplot as plt

    fig = build_figure(scores, baselines)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def build_figure(scores: Sequence[Score], baselines: Sequence[Tuple[Baseline, List[Score]]] = ()):
    """WER against tokens per second of speech; see the module docstring."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy = [s for s in scores if is_adaptive(s.scale)]
    scores = [s for s in scores if not is_adaptive(s.scale)]
    by_task: Dict[str, List[Score]] = {"avsr": []} if policy else {}
    for s in scores:
        by_task.setdefault(task_of(s.scale), []).append(s)
    for baseline, items in baselines:
        by_task.setdefault(baseline.task, [])
    tasks = [t for t in TASKS if t in by_task]
    datasets = list(dict.fromkeys([s.dataset for s in scores + policy]
                                  + [s.dataset for _, items in baselines for s in items]))
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(datasets)}
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2), sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        items = by_task[task]
        for dataset in datasets:
            line = sorted((s for s in items if s.dataset == dataset), key=lambda s: s.tokens_per_sec)
            if line:
                ax.plot([s.tokens_per_sec for s in line], [s.wer for s in line], "o-",
                        color=colours[dataset], markersize=4, linewidth=1.2)
        # One tick per scale (its mean cost over the test sets) carries its id.
        ticks: Dict[str, List[float]] = {}
        for s in items:
            ticks.setdefault(s.scale, []).append(s.tokens_per_sec)
        positions = {k: sum(v) / len(v) for k, v in ticks.items()}
        ax.set_xticks(list(positions.values()))
        ax.set_xticklabels([f"{k}\n{v:.1f}" for k, v in positions.items()], fontsize=7)
        if task == "avsr" and policy:
            for dataset in dict.fromkeys(s.dataset for s in policy):
                line = sorted((s for s in policy if s.dataset == dataset), key=lambda s: s.tokens_per_sec)
                ax.plot([s.tokens_per_sec for s in line], [s.wer for s in line], "*--",
                        color=colours[dataset], markersize=9, markeredgecolor="black", linewidth=1)
            ax.plot([], [], "*--", color="white", markeredgecolor="black", label="adaptive (per utterance)")
        for i, (baseline, b_scores) in enumerate(b for b in baselines if b[0].task == task):
            marker = _MARKERS[i % len(_MARKERS)]
            for s in b_scores:
                ax.plot(s.tokens_per_sec, s.wer, marker, color=colours[s.dataset], markersize=8,
                        markeredgecolor="black")
            ax.plot([], [], marker, color="white", markeredgecolor="black", label=baseline.label)
            top = max(b_scores, key=lambda s: s.wer, default=None)
            if top is not None:
                ax.annotate(baseline.label, (top.tokens_per_sec, top.wer), textcoords="offset points",
                            xytext=(0, 8), ha="center", fontsize=7)
        ax.set_title(task.upper())
        ax.set_xlabel("tokens per second of speech")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper right")
    axes[0][0].set_ylabel("WER (%)")
    handles = [plt.Line2D([], [], color=colours[d], marker="o", label=d) for d in datasets]
    fig.legend(handles=handles, loc="lower center", ncol=len(datasets), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
