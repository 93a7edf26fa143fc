import itertools
import json

import pytest

from espnet_mtsk.decoding.budget import ScaleCost, choose_scale, read_scale_table
from espnet_mtsk.reporting.scoring import Errors, Score, write_scale_table

NO_CHARS = Errors(10, 0, 0, 0, 0, 0, 0)

# A measured-looking table: finer scales cost more; the finest is not always
# the most accurate (a4_v2 beats a2_v2 here), as happens with real dev sets.
TABLE = [
    ScaleCost("a2", 9.0, 50.0, 0.30),
    ScaleCost("a4", 11.0, 25.0, 0.20),
    ScaleCost("v2", 40.0, 12.5, 0.15),
    ScaleCost("a2_v2", 6.0, 62.5, 0.40),
    ScaleCost("a4_v2", 5.5, 37.5, 0.25),
    ScaleCost("a4_v4", 8.0, 31.3, 0.22),
]


def test_best_wer_within_the_budget():
    assert choose_scale(TABLE).scale == "a4_v2"
    assert choose_scale(TABLE, max_tokens_per_sec=36).scale == "a4_v4"
    assert choose_scale(TABLE, max_tokens_per_sec=25).scale == "a4"
    assert choose_scale(TABLE, max_rtf=0.21).scale == "a4"
    assert choose_scale(TABLE, max_tokens_per_sec=60, max_rtf=0.16).scale == "v2"
    assert choose_scale(TABLE, allowed=["v2"]).scale == "v2"


@pytest.mark.parametrize("field", ["tokens_per_sec", "rtf"])
def test_tighter_budgets_never_pick_a_more_expensive_scale(field):
    budgets = sorted({getattr(r, field) for r in TABLE} | {0.17, 33.0, 1e9})
    chosen = []
    for budget in budgets:
        kwargs = {"max_tokens_per_sec" if field == "tokens_per_sec" else "max_rtf": budget}
        try:
            chosen.append(getattr(choose_scale(TABLE, **kwargs), field))
        except ValueError:
            assert not chosen, "a looser budget failed after a tighter one fitted"
    assert len(chosen) >= 4
    for tight, loose in itertools.pairwise(chosen):
        assert tight <= loose


def test_an_impossible_budget_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no scale fits.*cheapest, v2, needs 12.5"):
        choose_scale(TABLE, max_tokens_per_sec=5)
    with pytest.raises(ValueError, match="none of the scales"):
        choose_scale(TABLE, allowed=["v5"])


def test_the_scale_table_round_trips_from_scores(tmp_path):
    scores = [
        Score("dev", "a4", Errors(10, 60, 54, 4, 2, 0, 3), NO_CHARS, 25.0, 0.2),
        Score("dev", "a4_v2", Errors(10, 60, 57, 3, 0, 0, 2), NO_CHARS, 37.5, 0.25),
        Score("test", "a4", Errors(10, 60, 60, 0, 0, 0, 0), NO_CHARS, 25.0, 0.2),
    ]
    path = tmp_path / "scale_table.json"
    write_scale_table(scores, path, "dev")
    rows = read_scale_table(path)
    assert [r.scale for r in rows] == ["a4", "a4_v2"]
    assert rows[0].wer == 10.0 and rows[1].wer == 5.0
    assert choose_scale(rows).scale == "a4_v2"
    with pytest.raises(ValueError, match="no scores for 'eval'"):
        write_scale_table(scores, path, "eval")


def test_missing_or_broken_tables_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        read_scale_table(tmp_path / "nothere.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scales": [{"scale": "a4"}]}))
    with pytest.raises(ValueError, match="bad.json"):
        read_scale_table(bad)
