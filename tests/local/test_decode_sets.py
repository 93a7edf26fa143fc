"""Stages 12-13 (local/decode_sets.py): the sets of a decoding call become
one list of distinct inputs, and the jobs' results go back to every set
under its own ids."""

import json

import pytest

from local.decode_sets import main


def data_dir(path, rows):
    """rows: (utt, wav entry, video entry, words)."""
    path.mkdir(parents=True)
    for name, column in (("wav.scp", 1), ("video.scp", 2), ("text", 3)):
        (path / name).write_text("".join(f"{row[0]} {row[column]}\n" for row in rows))
    return path


def job_output(logdir, job, scale, files):
    recog = logdir / f"output.{job}" / scale / "1best_recog"
    recog.mkdir(parents=True)
    for name, lines in files.items():
        (recog / name).write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
    (logdir / f"output.{job}" / "decoding.json").write_text(json.dumps({"beam_size": 4}))


@pytest.fixture
def sets(tmp_path):
    clean = data_dir(tmp_path / "data" / "clean", [("u1", "clean/u1.wav", "u1.npy", "bin blue"),
                                                   ("u2", "clean/u2.wav", "u2.npy", "set red")])
    # noisy: u2's inputs again, u1's video with other audio, u3's own.
    noisy = data_dir(tmp_path / "data" / "noisy", [("u2-clean", "clean/u2.wav", "u2.npy", "set red"),
                                                   ("u1-snr0", "snr0/u1.wav", "u1.npy", "bin blue"),
                                                   ("u3-clean", "clean/u3.wav", "u3.npy", "lay green")])
    return clean, noisy


def test_each_distinct_input_is_decoded_once_and_every_set_gets_its_results(tmp_path, sets):
    clean, noisy = sets
    logdir = tmp_path / "decode" / "logdir.scales"
    assert main(["plan", "--logdir", str(logdir), str(clean), str(noisy)]) == 0
    assert (logdir / "keys").read_text().split() == ["clean:u1", "clean:u2", "noisy:u1-snr0", "noisy:u3-clean"]
    assert (logdir / "wav.scp").read_text().splitlines()[2] == "noisy:u1-snr0 snr0/u1.wav"
    assert (logdir / "video.scp").read_text().splitlines()[3] == "noisy:u3-clean u3.npy"
    assert "noisy u2-clean clean:u2" in (logdir / "members").read_text().splitlines()

    # Two jobs, each its share; only the second one's utterances have a scale file.
    job_output(logdir, 1, "a4", {"text": {"clean:u1": "bin blue", "noisy:u1-snr0": "bin blew"},
                                 "decode_seconds": {"clean:u1": "0.5", "noisy:u1-snr0": "0.25"}})
    job_output(logdir, 2, "a4", {"text": {"clean:u2": "set rad", "noisy:u3-clean": "lay green"},
                                 "decode_seconds": {"clean:u2": "0.75", "noisy:u3-clean": "0.5"},
                                 "scale": {"clean:u2": "a4", "noisy:u3-clean": "a4"}})
    out = tmp_path / "decode"
    stale = out / "clean" / "a4" / "1best_recog" / "estimator_seconds"
    stale.parent.mkdir(parents=True)
    stale.write_text("u1 1.0\n")
    assert main(["gather", "--logdir", str(logdir), "--out_dir", str(out), "--scales", "a4"]) == 0
    recog = out / "noisy" / "a4" / "1best_recog"
    assert (recog / "text").read_text() == "u1-snr0 bin blew\nu2-clean set rad\nu3-clean lay green\n"
    assert (recog / "decode_seconds").read_text() == "u1-snr0 0.25\nu2-clean 0.75\nu3-clean 0.5\n"
    assert (recog / "scale").read_text() == "u2-clean a4\nu3-clean a4\n"
    assert (out / "clean" / "a4" / "1best_recog" / "text").read_text() == "u1 bin blue\nu2 set rad\n"
    assert not stale.exists(), "a file of an earlier decoding stays beside the new results"
    assert json.loads((out / "noisy" / "decoding.json").read_text()) == {"beam_size": 4}


def test_an_utterance_the_jobs_did_not_decode_is_an_error_naming_the_logdir(tmp_path, sets):
    clean, noisy = sets
    logdir = tmp_path / "decode" / "logdir.scales"
    main(["plan", "--logdir", str(logdir), str(clean), str(noisy)])
    job_output(logdir, 1, "a4", {"text": {"clean:u1": "bin blue", "clean:u2": "set red", "noisy:u1-snr0": "x"}})
    with pytest.raises(ValueError, match=r"logdir.scales: no decoded text at scale a4 .* noisy, e.g. noisy:u3-clean"):
        main(["gather", "--logdir", str(logdir), "--out_dir", str(tmp_path / "decode"), "--scales", "a4"])


def test_sets_of_one_name_and_utterances_without_inputs_are_refused(tmp_path, sets):
    clean, _ = sets
    with pytest.raises(ValueError, match="distinct names"):
        main(["plan", "--logdir", str(tmp_path / "l"), str(clean), str(clean)])
    broken = data_dir(tmp_path / "other" / "broken", [("u9", "u9.wav", "u9.npy", "bin")])
    (broken / "video.scp").write_text("")
    with pytest.raises(ValueError, match=r"broken: u9 is in text but not in video.scp"):
        main(["plan", "--logdir", str(tmp_path / "l2"), str(clean), str(broken)])
