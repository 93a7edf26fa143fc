import pytest

from espnet_mtsk.scoring import characters, results_markdown, score_dir


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
    # sclite's result.txt is not written: only sclite writes a file of that name.
    assert not (decoded / "score_wer" / "result.txt").exists()

    text = results_markdown([score], "x")
    wer_table, cer_table = text.split("## CER")
    assert "|test|a4|2|6|50.0|16.7|33.3|0.0|50.0|100.0|12.5|0.100|" in wer_table
    assert f"|test|a4|2|{n_chars}|" in cer_table


def test_a_missing_hypothesis_names_the_files(tmp_path, refs):
    decoded = tmp_path / "d"
    write_decoding(decoded, {"u1": "bin blue at f"})
    with pytest.raises(ValueError, match=r"1best_recog/text lacks 1 utterances of .*text: u2"):
        score_dir(refs, decoded, "test", "a4")
