"""Stages 12-13 (local/reuse_decodings.py): an utterance whose audio and
video an earlier set of the decoding holds takes that set's results under
its own id; the others are left to decode."""

from local.reuse_decodings import main


def data_dir(path, rows):
    """rows: (utt, wav entry, video entry, words)."""
    path.mkdir(parents=True)
    for name, column in (("wav.scp", 1), ("video.scp", 2), ("text", 3)):
        (path / name).write_text("".join(f"{row[0]} {row[column]}\n" for row in rows))
    return path


def test_results_of_the_same_inputs_are_reused_under_their_own_ids(tmp_path):
    clean = data_dir(tmp_path / "data" / "clean", [("u1", "clean/u1.wav", "u1.npy", "bin blue"),
                                                   ("u2", "clean/u2.wav", "u2.npy", "set red")])
    # noisy: u2's inputs again, u1's video with other audio, u3's own.
    noisy = data_dir(tmp_path / "data" / "noisy", [("u2-clean", "clean/u2.wav", "u2.npy", "set red"),
                                                   ("u1-snr0", "snr0/u1.wav", "u1.npy", "bin blue"),
                                                   ("u3-clean", "clean/u3.wav", "u3.npy", "lay green")])
    for scale, hyps in {"a4": ("bin blue", "set rad"), "a4_v3": ("bin blue", "set red")}.items():
        recog = tmp_path / "decode" / "clean" / scale / "1best_recog"
        recog.mkdir(parents=True)
        (recog / "text").write_text(f"u1 {hyps[0]}\nu2 {hyps[1]}\n")
        (recog / "decode_seconds").write_text("u1 0.5\nu2 0.25\n")
    out = tmp_path / "decode" / "noisy" / "logdir"
    assert main(["--data_dir", str(noisy), "--out_dir", str(out), "--scales", "a4", "a4_v3",
                 "--earlier", f"{clean}={tmp_path / 'decode' / 'clean'}"]) == 0
    assert (out / "output.0" / "a4" / "1best_recog" / "text").read_text() == "u2-clean set rad\n"
    assert (out / "output.0" / "a4_v3" / "1best_recog" / "text").read_text() == "u2-clean set red\n"
    assert (out / "output.0" / "a4" / "1best_recog" / "decode_seconds").read_text() == "u2-clean 0.25\n"
    assert (out / "todo").read_text() == "u1-snr0 bin blue\nu3-clean lay green\n"

    # Nothing earlier: everything is left to decode.
    assert main(["--data_dir", str(clean), "--out_dir", str(tmp_path / "first"), "--scales", "a4"]) == 0
    assert (tmp_path / "first" / "todo").read_text() == (clean / "text").read_text()
