import pytest
from test_baselines import fake_baseline, write_refs

from espnet_mtsk.reporting.baselines import score_baselines
from espnet_mtsk.reporting.plot import build_figure, task_of
from espnet_mtsk.reporting.scoring import Errors, Score


def score(dataset, scale, tokens, wer):
    errors = Errors(snt=1, ref=100, corr=100 - wer, sub=wer, dele=0, ins=0, sent_err=1)
    return Score(dataset, scale, errors, errors, tokens, 0.1)


def test_task_of_a_scale():
    assert [task_of(s) for s in ("a4", "v3", "a16_v6")] == ["asr", "vsr", "avsr"]


def test_one_panel_per_task_a_line_per_test_set_and_the_baseline_marker(tmp_path):
    scores = [
        score(d, s, t, w)
        for d, off in (("test_clean", 0), ("test_snr0", 10))
        for s, t, w in (("a4", 12.5, 2), ("a16", 3.1, 5), ("v3", 8.3, 12), ("a4_v3", 20.8, 1), ("a16_v3", 11.4, 3))
        for w in [w + off]
    ]
    write_refs(tmp_path / "data", "test_clean")
    exp = fake_baseline(tmp_path / "b", label="espnet_a2_v1", test_sets=("test_clean",))
    baselines = score_baselines([exp], tmp_path / "data", ["test_clean"])
    fig = build_figure(scores, baselines)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == ["ASR", "VSR", "AVSR"]
    # Within a panel each test set's line runs through that task's scales
    # only, sorted by cost: no zigzag between tasks.
    avsr_lines = [line for line in axes["AVSR"].get_lines() if len(line.get_xdata()) > 1]
    assert [list(line.get_xdata()) for line in avsr_lines] == [[11.4, 20.8]] * 2
    assert [list(line.get_ydata()) for line in avsr_lines] == [[3, 1], [13, 11]]
    asr_lines = [line for line in axes["ASR"].get_lines() if len(line.get_xdata()) > 1]
    assert [list(line.get_xdata()) for line in asr_lines] == [[3.1, 12.5]] * 2
    # Scale ids are tick labels (with their tokens/s), not stacked annotations.
    assert [t.get_text() for t in axes["AVSR"].get_xticklabels()] == ["a4_v3\n20.8", "a16_v3\n11.4"]
    # The baseline: its own marker at its cost and WER, in its task's panel only.
    marker = [line for line in axes["AVSR"].get_lines() if line.get_marker() == "D" and len(line.get_xdata())]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in marker] == [(pytest.approx(25.0), pytest.approx(100 * 2 / 12))]
    assert [t.get_text() for t in axes["AVSR"].get_legend().get_texts()] == ["espnet_a2_v1"]
    assert axes["ASR"].get_legend() is None
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["test_clean", "test_snr0"]


def test_the_policys_points_are_stars_on_a_dashed_line_in_the_avsr_panel():
    fixed = [score("test_mixed", s, t, w) for s, t, w in (("a4", 12.5, 9), ("a4_v3", 20.8, 4), ("a16_v3", 11.4, 6))]
    policy = [score("test_mixed", p, t, w) for p, t, w in (("adaptive@12", 11.0, 5), ("adaptive", 19.0, 4), ("adaptive@6", 6.0, 7))]
    fig = build_figure(fixed + policy)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == ["ASR", "AVSR"]
    [stars] = [line for line in axes["AVSR"].get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert list(stars.get_xdata()) == [6.0, 11.0, 19.0] and list(stars.get_ydata()) == [7, 5, 4]
    assert stars.get_linestyle() == "--"
    # The policy is no scale: no tick of its own, and the fixed line stays the scales'.
    assert [t.get_text() for t in axes["AVSR"].get_xticklabels()] == ["a4_v3\n20.8", "a16_v3\n11.4"]
    assert "adaptive (per utterance)" in [t.get_text() for t in axes["AVSR"].get_legend().get_texts()]
