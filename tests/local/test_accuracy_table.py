import statistics

import pytest
import yaml

from local import accuracy_table

REFS = {"u1": "bin blue at a one now", "u2": "set red by b two soon"}


def fake_experiment(exp_dir, data_dir, tag, conf, hyps, decode="decode_x"):
    """exp_dir/asr_<tag> as run_compare.sh leaves it: config, train.log and
    one decoding per scale; ``hyps`` maps a scale to its hypotheses."""
    exp = exp_dir / f"asr_{tag}"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text(yaml.safe_dump(conf))
    (exp / "train.log").write_text("...\n# Accounting: time=100 threads=1\n")
    fake_decoding(exp, decode, hyps)
    (data_dir / "test").mkdir(parents=True, exist_ok=True)
    (data_dir / "test" / "text").write_text("".join(f"{k} {v}\n" for k, v in REFS.items()))


def fake_decoding(exp, decode, hyps):
    """exp/<decode>/test/<scale>/1best_recog of ``hyps`` ({scale: hypotheses})."""
    for scale, texts in hyps.items():
        best = exp / decode / "test" / scale / "1best_recog"
        best.mkdir(parents=True)
        (best / "text").write_text("".join(f"{k} {v}\n" for k, v in zip(REFS, texts)))
        for name, value in (("num_tokens", 10), ("speech_seconds", 2.0), ("decode_seconds", 0.1)):
            (best / name).write_text("".join(f"{k} {value}\n" for k in REFS))


def conf(mode, lora="ms", compressor="avgpool", audio=(3, 6), video=(3,), seed=0, max_epoch=12):
    return dict(compressor=compressor, lora=lora, seed=seed, max_epoch=max_epoch,
                model_conf=dict(mode=mode, audio_rates=list(audio), video_rates=list(video)))


def table(tmp_path, scales, tags, *options):
    """The markdown accuracy_table writes for ``tags`` of tmp_path/exp."""
    out = tmp_path / "results.md"
    accuracy_table.main(["--exp_dir", str(tmp_path / "exp"), "--data_dir", str(tmp_path / "data"),
                         "--test_sets", "test", "--scales", *scales, "--out", str(out),
                         "--command", "./run_compare.sh", *options, *tags])
    return out.read_text()


def two_seeds(exp, data):
    """Per-rate a3 right (seed 0) and half wrong (seed 1); MS-LoRA half wrong
    at a3 on both seeds: tags r0, r1, m0, m1."""
    right, half = list(REFS.values()), ["", "set red by b two soon"]
    fake_experiment(exp, data, "r0", conf("asr", audio=(3,)), {"a3": right})
    fake_experiment(exp, data, "r1", conf("asr", audio=(3,), seed=1), {"a3": half})
    fake_experiment(exp, data, "m0", conf("asr", "ms"), {"a3": half, "a6": right})
    fake_experiment(exp, data, "m1", conf("asr", "ms", seed=1), {"a3": half, "a6": right})


def test_table_compares_each_matryoshka_variant_with_the_per_rate_model(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    right = list(REFS.values())
    one_wrong = ["bin blue at a one now", "set red by b three soon"]  # 1 of 12 words
    fake_experiment(exp, data, "rate_a3", conf("asr", audio=(3,)), {"a3": right})
    fake_experiment(exp, data, "rate_a6", conf("asr", audio=(6,)), {"a6": one_wrong})
    fake_experiment(exp, data, "ms", conf("asr", "ms"), {"a3": one_wrong, "a6": one_wrong})
    fake_experiment(exp, data, "ss", conf("asr", "ss"), {"a3": one_wrong, "a6": right})
    every_task = {s: one_wrong for s in ("a3", "a6", "v3", "a3_v3", "a6_v3")}
    fake_experiment(exp, data, "all", conf("all", "mss"), {**every_task, "a3": right})
    text = table(tmp_path, ["a3", "a6"], ["rate_a3", "rate_a6", "ms", "ss", "all"])
    assert "| scale | per-rate | MS-LoRA | SS-LoRA | MSS-LoRA, all tasks | gap |" in text
    assert "| a3 | 0.0 | 8.3 | 8.3 | 0.0 | +0.0 |" in text
    assert "| a6 | 8.3 | 8.3 | 0.0 | 8.3 | -8.3 |" in text
    assert "Target met at 2 of 2" in text
    assert "steps (max_epoch 12)" in text
    assert "./run_compare.sh" in text


def test_a_model_without_adapters_is_its_own_variant(tmp_path):
    # The SynthGRID recipe's model: lora none (null in its config.yaml), mode all.
    exp, data = tmp_path / "exp", tmp_path / "data"
    right = list(REFS.values())
    fake_experiment(exp, data, "rate_a3", conf("asr", audio=(3,)), {"a3": right})
    fake_experiment(exp, data, "main", conf("all", None), {s: right for s in ("a3", "a6", "v3", "a3_v3", "a6_v3")})
    text = table(tmp_path, ["a3"], ["rate_a3", "main"])
    assert "| scale | per-rate | whole LLM, all tasks | gap |" in text
    assert "| a3 | 0.0 | 0.0 | +0.0 |" in text


def test_seeds_are_averaged_with_their_spread(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    two_seeds(exp, data)
    fake_experiment(exp, data, "s0", conf("asr", "ss"), {"a3": list(REFS.values()), "a6": list(REFS.values())})
    wers, epochs = accuracy_table.collect(exp, data, ["r0", "r1", "m0", "m1", "s0"], ["test"])
    assert wers["test", "avgpool", "per-rate", "a3"] == {0: 0.0, 1: 50.0} and epochs == 12
    text = table(tmp_path, ["a3"], ["r0", "r1", "m0", "m1", "s0"])
    assert "mean ± std over 2 seeds" in text
    # SS (seed 0 only) reads best, but the gap is MS's, the best of the
    # variants with both seeds: per-seed differences 50 - 0 and 50 - 50.
    assert "| a3 | 25.0 ± 35.4 | 50.0 ± 0.0 | 0.0 (n=1) | +25.0 ± 35.4 |" in text


def test_the_gap_spread_pairs_the_seeds(tmp_path):
    two_seeds(tmp_path / "exp", tmp_path / "data")
    text = table(tmp_path, ["a3"], ["r0", "r1", "m0", "m1"])
    # Per-seed differences 50 - 0 and 50 - 50.
    assert "| a3 | 25.0 ± 35.4 | 50.0 ± 0.0 | +25.0 ± 35.4 |" in text
    # The mean-gap section averages a seed's cells first: one cell here.
    # Standard error 35.4 / sqrt(2), 95 % half-width 12.71 times that.
    assert "| avgpool | MS-LoRA | 1 | 2 | +25.0 ± 35.4 | 25.00 | -292.7 to +342.7 | can't tell | +50.0, +0.0 |" in text


def test_the_mean_gap_averages_each_seeds_cells(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    right, one_wrong = list(REFS.values()), ["bin blue at a one now", "set red by b three soon"]
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": one_wrong})
    fake_experiment(exp, data, "r6", conf("asr", audio=(6,)), {"a6": right})
    fake_experiment(exp, data, "ms", conf("asr", "ms"), {"a3": right, "a6": right})
    # Gaps -8.3 (a3) and 0.0 (a6).
    assert "| avgpool | MS-LoRA | 2 | 1 | -4.2 | — | — | — | -4.2 |" in table(tmp_path, ["a3", "a6"], ["r3", "r6", "ms"])


def test_the_mean_gap_keeps_to_the_cells_every_seed_has(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    right, one_wrong = list(REFS.values()), ["bin blue at a one now", "set red by b three soon"]
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": one_wrong})
    fake_experiment(exp, data, "r6", conf("asr", audio=(6,)), {"a6": right})
    fake_experiment(exp, data, "r6s1", conf("asr", audio=(6,), seed=1), {"a6": right})
    fake_experiment(exp, data, "ms", conf("asr", "ms"), {"a3": right, "a6": one_wrong})
    fake_experiment(exp, data, "ms1", conf("asr", "ms", seed=1), {"a3": right, "a6": right})
    text = table(tmp_path, ["a3", "a6"], ["r3", "r6", "r6s1", "ms", "ms1"])
    # Seed 1 has no per-rate a3: only a6 counts, +8.3 (seed 0) and 0 (seed 1).
    assert "| avgpool | MS-LoRA | 1 | 2 | +4.2 ± 5.9 | 4.17 | -48.8 to +57.1 | can't tell | +8.3, +0.0 |" in text


@pytest.mark.parametrize("gaps, within", [
    ([0.1, 0.2, 0.3, 0.2], "yes"),      # interval about +0.07 to +0.33
    ([1.0, 1.2, 0.9, 1.1], "no"),       # about +0.84 to +1.26
    ([1.8, 0.3, 0.2], "can't tell"),    # about -1.3 to +2.8
])
def test_the_mean_gap_is_judged_by_its_confidence_interval(gaps, within):
    sem, half = accuracy_table.confidence(gaps)
    assert sem == pytest.approx(statistics.stdev(gaps) / len(gaps) ** 0.5)
    assert accuracy_table.verdict(statistics.mean(gaps), half, accuracy_table.MEAN_GAP_BOUND) == within


def test_models_trained_for_different_epochs_are_an_error(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    right = list(REFS.values())
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": right})
    fake_experiment(exp, data, "ms_ep24", conf("asr", "ms", max_epoch=24), {"a3": right, "a6": right})
    with pytest.raises(ValueError, match="12: r3; 24: ms_ep24"):
        table(tmp_path, ["a3"], ["r3", "ms_ep24"])


def test_two_models_of_one_variant_and_seed_are_an_error(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    fake_experiment(exp, data, "a", conf("asr", audio=(3,)), {"a3": list(REFS.values())})
    fake_experiment(exp, data, "b", conf("asr", audio=(3,)), {"a3": list(REFS.values())})
    with pytest.raises(ValueError, match="asr_b: a second per-rate avgpool model with seed 0"):
        accuracy_table.collect(exp, data, ["a", "b"], ["test"])


def test_an_unfinished_experiment_is_named(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    fake_experiment(exp, data, "t", conf("asr", audio=(3,)), {"a3": list(REFS.values())})
    (exp / "asr_t" / "train.log").write_text("still training\n")
    with pytest.raises(ValueError, match="asr_t/train.log has no accounting line"):
        accuracy_table.collect(exp, data, ["t"], ["test"])


def test_the_decoding_scored_is_the_one_named(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    right, wrong = list(REFS.values()), ["", ""]
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": right}, decode="decode_decode_valid.acc.ave")
    # A second inference config's decoding, first in alphabetical order.
    fake_decoding(exp / "asr_r3", "decode_beam1_valid.acc.ave", {"a3": wrong})
    assert "| a3 | 0.0 |" in table(tmp_path, ["a3"], ["r3"], "--decode_tag", "decode_decode_valid.acc.ave")
    assert "| a3 | 100.0 |" in table(tmp_path, ["a3"], ["r3"], "--decode_tag", "decode_beam1_valid.acc.ave")


def test_several_decodings_and_none_named_are_an_error(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": list(REFS.values())}, decode="decode_b")
    fake_decoding(exp / "asr_r3", "decode_a", {"a3": ["", ""]})
    with pytest.raises(ValueError, match=r"asr_r3 has 2 decodings, decode_a decode_b: name one with --decode_tag"):
        accuracy_table.collect(exp, data, ["r3"], ["test"])
    with pytest.raises(ValueError, match=r"asr_r3/decode_c: no such decoding \(there are decode_a decode_b\)"):
        accuracy_table.collect(exp, data, ["r3"], ["test"], "decode_c")


def test_the_only_decoding_needs_no_name(tmp_path):
    exp, data = tmp_path / "exp", tmp_path / "data"
    fake_experiment(exp, data, "r3", conf("asr", audio=(3,)), {"a3": ["", ""]}, decode="decode_b")
    assert accuracy_table.collect(exp, data, ["r3"], ["test"])[0]["test", "avgpool", "per-rate", "a3"] == {0: 100.0}
    (exp / "asr_r3" / "decode_b").rename(exp / "asr_r3" / "elsewhere")
    with pytest.raises(ValueError, match="asr_r3 has no decode_\\* directory: run stage 12 first"):
        accuracy_table.collect(exp, data, ["r3"], ["test"])


def test_baseline_rows_come_from_their_stage_16_folders(tmp_path):
    from test_baselines import fake_baseline

    exp, data = tmp_path / "exp", tmp_path / "data"
    two_seeds(exp, data)
    zip_exp = fake_baseline(exp / "asr_zip_espnet_a2_v1")
    out = tmp_path / "results.md"
    accuracy_table.main(["--exp_dir", str(exp), "--data_dir", str(data), "--test_sets", "test",
                         "--scales", "a3", "--baselines", str(zip_exp), "--out", str(out),
                         "--command", "./run_compare.sh", "r0", "m0"])
    text = out.read_text()
    assert "## ESPnet models on the same data" in text
    assert "| model | task | tokens/s | RTF | trainable parameters | test |" in text
    assert "| espnet_a2_v1 | AVSR | 25.0 | 0.250 | 600 | 16.7 |" in text
    # The Matryoshka comparison is unchanged by it.
    assert text.startswith(table(tmp_path, ["a3"], ["r0", "m0"]).split("## ESPnet")[0])
