#!/usr/bin/env python3
"""Stages 13 and 16: score every (test set, scale) decoding and write
RESULTS.md, with the rows of the ESPnet models decoded beside it
(``--baselines``), and, with ``--scale_table``, the per-scale cost table of
one set that ``--scale auto`` chooses from; with ``--policy_sets`` and
``--policies``, a section per set on the per-utterance policy
(``espnet_mtsk.reporting.policy_scoring``: the set's ``utt2condition`` gives each
utterance's condition)."""

import argparse
from pathlib import Path

from espnet2.fileio.read_text import read_2columns_text

from espnet_mtsk.reporting.baselines import baselines_markdown, score_baselines
from espnet_mtsk.reporting.plot import plot_pareto
from espnet_mtsk.reporting.policy_scoring import policy_markdown, read_run
from espnet_mtsk.reporting.scoring import results_markdown, score_dir, write_scale_table


def main(cmd=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decode_dir", type=Path,
                        help="holds <test_set>/<scale>/1best_recog/ (none: baselines only)")
    parser.add_argument("--data_dir", type=Path, required=True,
                        help="holds <test_set>/text (the references)")
    parser.add_argument("--test_sets", nargs="+", required=True)
    parser.add_argument("--scales", nargs="*", default=[])
    parser.add_argument("--baselines", nargs="*", type=Path, default=[],
                        help="stage-16 folders of ESPnet models (espnet_mtsk.reporting.baselines)")
    parser.add_argument("--results", type=Path, required=True, help="RESULTS.md to write")
    parser.add_argument("--title", default="Results")
    parser.add_argument("--scale_table", type=Path, help="scale_table.json to write")
    parser.add_argument("--scale_table_set", help="the set it is measured on (a dev set)")
    parser.add_argument("--policy_sets", nargs="*", default=[],
                        help="sets (of --test_sets, with utt2condition) decoded with the policy too")
    parser.add_argument("--policies", nargs="*", default=[], help="the policy's decodings, e.g. adaptive@12")
    args = parser.parse_args(cmd)
    if args.scales and args.decode_dir is None:
        parser.error("--scales needs --decode_dir")

    scores = [
        score_dir(args.data_dir / test_set / "text", args.decode_dir / test_set / scale, test_set, scale)
        for test_set in args.test_sets
        for scale in args.scales
    ]
    sections = []
    for test_set in args.policy_sets:
        ref = args.data_dir / test_set / "text"
        condition = read_2columns_text(args.data_dir / test_set / "utt2condition")
        scores += [score_dir(ref, args.decode_dir / test_set / p, test_set, p) for p in args.policies]
        runs = [read_run(s, ref, args.decode_dir / test_set / s.scale, condition)
                for s in scores if s.dataset == test_set]
        sections.append(policy_markdown(test_set, runs))
    baselines = score_baselines(args.baselines, args.data_dir, args.test_sets)
    png = args.results.with_name("wer_vs_tokens.png")
    plot_pareto(scores, png, baselines)
    text = results_markdown(scores + [s for _, items in baselines for s in items], args.title)
    if baselines:
        text += "\n" + baselines_markdown(baselines)
    for section in sections:
        text += "\n" + section
    text += f"\n![WER vs tokens/s]({png.name})\n"
    args.results.write_text(text)
    if args.scale_table is not None:
        write_scale_table(scores, args.scale_table, args.scale_table_set or args.test_sets[0])
    print(text)


if __name__ == "__main__":
    main()
