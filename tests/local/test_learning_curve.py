"""local.learning_curve: ESPnet train.log -> validation accuracy against minutes."""

import pytest

from local.learning_curve import log_minutes, main, read_curve

LOG = """\
[h] 2026-12-07 05:00:00,000 (trainer:300) INFO: 1/2epoch started
[h] 2026-12-07 05:01:30,500 (trainer:380) INFO: 1epoch results: [train] iter_time=0.01, train_time=1.600, loss=3.100, acc=0.300, \
time=1 minute and 20.5 seconds, total_count=50, gpu_max_cached_mem_GB=0.000e+00, [valid] loss=2.000, acc=0.450, \
acc_a4=0.400, acc_v3=0.500, time=10 seconds, total_count=7, gpu_max_cached_mem_GB=0.000e+00
[h] 2026-12-07 05:01:31,000 (trainer:300) INFO: 2/2epoch started. Estimated time to finish: 1 minute
[h] 2026-12-07 05:03:00,500 (trainer:380) INFO: 2epoch results: [train] iter_time=0.01, train_time=1.580, loss=2.100, acc=0.500, \
time=1 minute and 19 seconds, total_count=100, gpu_max_cached_mem_GB=3.250, [valid] loss=1.000, acc=0.650, \
acc_a4=0.600, acc_v3=0.700, time=10 seconds, total_count=14, gpu_max_cached_mem_GB=0.000e+00
"""


def test_a_log_gives_steps_minutes_and_accuracies(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "train.log").write_text(LOG)
    points = read_curve(tmp_path / "a" / "train.log")
    assert [p.steps for p in points] == [50, 100]
    assert [round(p.minutes, 3) for p in points] == [1.508, 3.008]
    assert [p.acc for p in points] == [0.45, 0.65]
    assert points[1].per_scale == {"a4": 0.6, "v3": 0.7}
    assert [p.step_seconds for p in points] == [1.6, 1.58] and [p.peak_gb for p in points] == [0.0, 3.25]
    main([str(tmp_path / "a"), "--names", "base", "--png", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "| base | 2 | 100 | 3.0 | 1.58 | 3.2 | 0.650 | 0.600 | 0.700 |" in out
    # A pre-training's minutes count towards the training that starts from it.
    assert log_minutes(tmp_path / "a" / "train.log") == pytest.approx(3.008, abs=1e-3)
    main([str(tmp_path / "a"), str(tmp_path / "a"), "--names", "base", "warm",
          "--start_logs", "-", str(tmp_path / "a" / "train.log")])
    assert "| warm | 2 | 100 | 6.0 |" in capsys.readouterr().out
    assert (tmp_path / "c.png").stat().st_size > 0


def test_a_log_without_a_finished_epoch_is_an_error(tmp_path):
    (tmp_path / "train.log").write_text(LOG.splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="train.log: no finished epoch"):
        read_curve(tmp_path / "train.log")
