import json

import pytest

from espnet_mtsk.bin import score
from espnet_mtsk.reporting.baselines import baselines_markdown, read_baseline, score_baselines

REFS = {"u1": "bin blue at a one now", "u2": "set red by b two soon"}


def write_refs(data_dir, test_set):
    (data_dir / test_set).mkdir(parents=True, exist_ok=True)
    (data_dir / test_set / "text").write_text("".join(f"{k} {v}\n" for k, v in REFS.items()))


def write_decoding(best, hyps, tokens, seconds=2.0, wall=0.5):
    best.mkdir(parents=True)
    (best / "text").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
    for name, value in (("num_tokens", tokens), ("speech_seconds", seconds), ("decode_seconds", wall)):
        (best / name).write_text("".join(f"{k} {value}\n" for k in hyps))


def fake_baseline(exp_dir, label="espnet_a2_v1", task="avsr", test_sets=("test",), hyps=None):
    """A stage-16 folder as avsr.sh leaves it."""
    exp_dir.mkdir(parents=True)
    (exp_dir / "baseline.json").write_text(json.dumps({"label": label, "task": task, "model": "x.zip"}))
    for test_set in test_sets:
        out = exp_dir / "decode" / test_set / label
        write_decoding(out / "1best_recog", hyps or {"u1": "bin blue at a one now", "u2": "set red by b"}, 50)
        (out / "model.json").write_text(json.dumps({"parameters": 1000, "trainable_parameters": 600}))
    return exp_dir


def test_baseline_rows_are_scored_by_the_matryoshka_scorer(tmp_path):
    write_refs(tmp_path / "data", "test")
    write_refs(tmp_path / "data", "dev")
    exp = fake_baseline(tmp_path / "exp" / "asr_zip_x")
    # dev has no decoding of the baseline: it is left out, not an error.
    [(baseline, scores)] = score_baselines([exp], tmp_path / "data", ["dev", "test"])
    assert (baseline.label, baseline.task, baseline.trainable_parameters) == ("espnet_a2_v1", "avsr", 600)
    [s] = scores
    assert (s.dataset, s.scale) == ("test", "espnet_a2_v1")
    assert s.wer == pytest.approx(100 * 2 / 12)  # two words of u2 deleted
    assert s.tokens_per_sec == pytest.approx(25.0) and s.rtf == pytest.approx(0.25)
    assert "`espnet_a2_v1` (AVSR): `x.zip`, 600 trainable parameters of 1,000" in baselines_markdown([(baseline, scores)])


def test_results_md_has_the_matryoshka_and_the_baseline_rows(tmp_path):
    data = tmp_path / "data"
    write_refs(data, "test")
    for scale, tokens in (("a4", 25), ("v3", 17), ("a4_v3", 42)):
        write_decoding(tmp_path / "decode" / "test" / scale / "1best_recog", REFS, tokens)
    exp = fake_baseline(tmp_path / "exp" / "asr_zip_x")
    results = tmp_path / "RESULTS.md"
    score.main(["--decode_dir", str(tmp_path / "decode"), "--data_dir", str(data), "--test_sets", "test",
                "--scales", "a4", "v3", "a4_v3", "--baselines", str(exp), "--results", str(results)])
    wer = results.read_text().split("## CER")[0]
    assert "|test|a4_v3|2|12|100.0|0.0|0.0|0.0|0.0|0.0|21.0|0.250|" in wer
    assert "|test|espnet_a2_v1|2|12|83.3|0.0|16.7|0.0|16.7|50.0|25.0|0.250|" in wer
    assert "600 trainable parameters" in results.read_text()
    assert (tmp_path / "wer_vs_tokens.png").stat().st_size > 0


@pytest.mark.parametrize(
    "meta, message",
    [
        (None, r"baseline.json: cannot read it"),
        ({"label": "x", "model": "m"}, r"baseline.json lacks \['task'\]"),
        ({"label": "x", "task": "lip", "model": "m"}, r"task 'lip' is not one of"),
        ({"label": "y", "task": "asr", "model": "m"}, r"no decoding of 'y'"),
    ],
)
def test_a_bad_baseline_folder_names_the_file(tmp_path, meta, message):
    exp = fake_baseline(tmp_path / "b")
    if meta is None:
        (exp / "baseline.json").unlink()
    else:
        (exp / "baseline.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message):
        read_baseline(exp)
