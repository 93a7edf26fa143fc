import re

import pytest

from espnet_mtsk.reporting import scoring
from espnet_mtsk.reporting.scoring import characters, results_markdown, score_dir


def write_decoding(decode_dir, hyps, seconds=2.0, tokens=25):
    best = decode_dir / "1best_recog"
    best.mkdir(parents=True)
    (best / "text").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
    for name, value in (("num_tokens", tokens), ("speech_seconds", seconds), ("decode_seconds", seconds / 10)):
        (best / name).write_text("".join(f"{k} {value}\n" for k in hyps))


@pytest.fixture
def refs(tmp_path):
    ref = tmp_path / "text"
    ref.write_text("u1 BIN BLUE AT F\nu2 lay red\n")
    return ref


def test_wer_cer_and_the_espnet_style_files(tmp_path, refs):
    decoded = tmp_path / "decode" / "test" / "a4"
    # u1: one substituted word of 4, one character of 13 (b i n <space> ...);
    # u2: empty hypothesis, every unit deleted.
    write_decoding(decoded, {"u1": "bin blue at e", "u2": ""})
    score = score_dir(refs, decoded, "test", "a4")
    assert (score.words.ref, score.words.sub, score.words.dele) == (6, 1, 2)
    assert score.wer == pytest.approx(50.0)
    n_chars = len(characters("bin blue at f").split()) + len(characters("lay red").split())
    assert score.chars.ref == n_chars and (score.chars.sub, score.chars.dele) == (1, 7)
    assert score.cer == pytest.approx(100 * 8 / n_chars)
    assert score.words.sent_err == 2 and score.tokens_per_sec == pytest.approx(12.5)
    assert score.rtf == pytest.approx(0.1)
    assert (decoded / "score_wer" / "ref.trn").read_text().splitlines()[0] == "bin blue at f\t(u1)"
    assert "l a y <space> r e d\t(u2)" in (decoded / "score_cer" / "ref.trn").read_text()
    assert "u1\tHYP: bin blue at e" in (decoded / "score_wer" / "result.md").read_text()
    assert "Sum/Avg" in (decoded / "score_wer" / "result.txt").read_text()

    text = results_markdown([score], "x")
    wer_table, cer_table = text.split("## CER")
    assert "|test|a4|2|6|50.0|16.7|33.3|0.0|50.0|100.0|12.5|0.100|" in wer_table
    assert f"|test|a4|2|{n_chars}|" in cer_table


def test_a_missing_hypothesis_names_the_files(tmp_path, refs):
    decoded = tmp_path / "d"
    write_decoding(decoded, {"u1": "bin blue at f"})
    with pytest.raises(ValueError, match=r"1best_recog/text lacks 1 utterances of .*text: u2"):
        score_dir(refs, decoded, "test", "a4")


def test_the_policy_section_per_condition_choices_and_the_fixed_scales_below_its_line(tmp_path):
    from espnet_mtsk.bin import score

    data, dec = tmp_path / "data" / "test_mixed", tmp_path / "decode" / "test_mixed"
    data.mkdir(parents=True)
    refs = {"u1": "bin blue at f two now", "u2": "lay red by g one soon", "u3": "set white in o six please"}
    (data / "text").write_text("".join(f"{k} {v}\n" for k, v in refs.items()))
    (data / "utt2condition").write_text("u1 clean\nu2 snr0\nu3 snr0\n")
    wrong = {**refs, "u2": "lay red by g one now", "u3": "set white in o"}
    # (hypotheses, tokens per utterance): a cheap audio scale wrong in noise, a dear AV scale right.
    for scale, hyps, tokens in (("a4", wrong, 25), ("a4_v3", refs, 42), ("a16_v6", refs, 16), ("a16_v3", refs, 30)):
        write_decoding(dec / scale, hyps, tokens=tokens)
    for policy, tokens, chosen in (("adaptive@9", 20, ["a4", "a4>a4_v3", "a4_v3"]), ("adaptive", 42, ["a4_v3"] * 3)):
        write_decoding(dec / policy, refs if policy == "adaptive" else {**refs, "u3": wrong["u3"]}, tokens=tokens)
        best = dec / policy / "1best_recog"
        (best / "scale").write_text("".join(f"{k} {c}\n" for k, c in zip(refs, chosen)))
        (best / "estimator_seconds").write_text("".join(f"{k} 0.01\n" for k in refs))
    results = tmp_path / "RESULTS.md"
    score.main(["--decode_dir", str(tmp_path / "decode"), "--data_dir", str(tmp_path / "data"),
                "--test_sets", "test_mixed", "--scales", "a4", "a4_v3", "a16_v6", "a16_v3", "--results", str(results),
                "--policy_sets", "test_mixed", "--policies", "adaptive@9", "adaptive"])
    text = results.read_text()
    section = text.split("## Per-utterance scale on test_mixed")[1]
    # Per condition: a4 is right on the clean utterance, 1 + 2 of 12 words wrong at 0 dB.
    assert "|a4|12.5|0.100||16.67|0.0|25.0|" in section
    # The estimator's RTF: 0.01 s per 2 s of speech.
    assert "|adaptive@9|10.0|0.100|0.0050|11.11|0.0|16.7|" in section
    assert "|adaptive@9|clean|1|0|0|" in section and "|adaptive@9|snr0|0|1|1|" in section
    assert "|adaptive|snr0|0|0|2|" in section
    # a16_v6 (8 tokens/s) lies outside the policy's range (10-21 tokens/s);
    # a4 lies above its line, a16_v3 (15 tokens/s, no error) below it.
    assert "|a16_v6|8.0|0.00|outside||21.0 (262%)|" in section
    assert "|a4|12.5|16.67|8.59|-48%|10.0 (80%)|" in section
    assert "|a16_v3|15.0|0.00|6.06||21.0 (140%)|" in section
    assert "Fixed scales below the policy's line within its range: a16_v3." in section
    assert "|test_mixed|adaptive@9|" in text.split("## CER")[0]


def sclite_sum(result_txt):
    """The counts of the ``Sum`` row of sclite's report, read apart from the code under test."""
    row = re.search(r"^\s*\| Sum\s+\|([^|]+)\|([^|]+)\|", result_txt.read_text(), re.M)
    return [int(x) for x in row.group(1).split() + row.group(2).split()]


def test_results_are_sclite_s_counts(tmp_path):
    ref = tmp_path / "text"
    ref.write_text("u1 bin blue at f two now\nu2 lay red by g\nu3 set white with p\nu4 place green in a\n")
    decoded = tmp_path / "d"
    # A substitution, a deletion, two insertions, a correct sentence.
    write_decoding(decoded, {"u1": "bin green at f two now", "u2": "lay red g", "u3": "set white with p p again",
                             "u4": "place green in a"})
    score = score_dir(ref, decoded, "test", "a4")
    snt, wrd, corr, sub, dele, ins, err, s_err = sclite_sum(decoded / "score_wer" / "result.txt")
    assert (snt, wrd, corr, sub, dele, ins, err, s_err) == (4, 18, 16, 1, 1, 2, 4, 3)
    w = score.words
    assert (w.snt, w.ref, w.corr, w.sub, w.dele, w.ins, w.wrong, w.sent_err) == (snt, wrd, corr, sub, dele, ins, err, s_err)
    c = score.chars
    assert [c.snt, c.ref, c.corr, c.sub, c.dele, c.ins, c.wrong, c.sent_err] == sclite_sum(
        decoded / "score_cer" / "result.txt")
    row = results_markdown([score], "x").split("## CER")[0]
    assert f"|test|a4|4|18|{100 * 16 / 18:.1f}|{100 / 18:.1f}|{100 / 18:.1f}|{200 / 18:.1f}|{400 / 18:.1f}|75.0|" in row


def test_without_sclite_scoring_names_the_package(tmp_path, refs, monkeypatch):
    monkeypatch.setattr(scoring.shutil, "which", lambda name: None)
    monkeypatch.setattr(scoring, "_SCLITE_PLACES", ())
    decoded = tmp_path / "d"
    write_decoding(decoded, {"u1": "bin blue at f", "u2": "lay red"})
    with pytest.raises(FileNotFoundError, match="install the Debian package sctk"):
        score_dir(refs, decoded, "test", "a4")
