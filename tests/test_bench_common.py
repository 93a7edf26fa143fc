import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import Summary, ratios  # noqa: E402


def test_summary_is_the_median_and_half_the_10_90_range():
    # Sorted 0.9 1.0 1.0 1.1 1.2: the 10th percentile lies 0.4 of the way
    # from 0.9 to 1.0, the 90th 0.6 of the way from 1.1 to 1.2.
    summary = Summary([1.0, 1.1, 0.9, 1.0, 1.2])
    assert summary.median == 1.0
    assert summary.spread == pytest.approx((1.16 - 0.94) / 2)
    assert summary.format(1000) == "1000.0 ± 110.0"


def test_summary_says_unreliable_instead_of_a_number():
    assert Summary([1.0, 1.0]).format() == "unreliable (2 samples)"
    assert Summary([1.0]).format() == "unreliable (1 sample)"
    assert Summary([1.0, 2.0, 0.5, 1.0]).format() == "unreliable (spread ±52 %)"


@pytest.mark.parametrize("samples", [[], [0.1, 0.0, 0.1], [0.1, -0.2, 0.1]])
def test_summary_refuses_non_positive_or_missing_times(samples):
    with pytest.raises(ValueError):
        Summary(samples)


def test_ratios_pair_samples_of_the_same_repetition():
    assert ratios([1.0, 4.0], [2.0, 8.0]) == [0.5, 0.5]
    with pytest.raises(ValueError):
        ratios([1.0], [1.0, 2.0])
