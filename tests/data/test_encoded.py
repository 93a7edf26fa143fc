"""Dumped frozen-encoder outputs: the dump CLI, the ``encoded`` data type,
and a model trained on them computing what it computes from the audio."""

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audio_dirs import LAYOUTS, tones, write_audio_dirs
from conftest import build, make_batch, model_config
from espnet_mtsk.bin.dump_encoded import main as dump_main
from espnet_mtsk.data.encoded import EncodedScpReader
from espnet_mtsk.encoders.whisper import HFWhisperEncoder


@pytest.fixture
def data_dirs(tmp_path):
    """The data dirs of audio_dirs.write_audio_dirs, and a noise list."""
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "noise.wav"), (rng.standard_normal(16000) * 0.3).astype(np.float32), 16000)
    (tmp_path / "noise.scp").write_text(f"n0 {tmp_path / 'noise.wav'}\n")
    return write_audio_dirs(tmp_path / "data", tones())


@pytest.fixture
def data_dir(data_dirs):
    return data_dirs["files"]


def write_config(path, llm_dir, whisper_dir, freeze=("encoders",), **audio_encoder_conf):
    conf = model_config(llm_dir, whisper_dir, mode="asr", lora="ms")
    conf["freeze_param"] = list(freeze)
    conf["audio_encoder_conf"].update(audio_encoder_conf)
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def test_dump_writes_clean_and_noisy_variants_of_the_frozen_encoder(data_dir, tmp_path, llm_dir, whisper_dir):
    config = write_config(tmp_path / "conf.yaml", llm_dir, whisper_dir)
    out = tmp_path / "enc"
    args = ["--config", config, "--data_dir", str(data_dir), "--out_dir", str(out), "--batch_size", "2"]
    noisy_args = ["--noise_scp", str(tmp_path / "noise.scp"), "--noisy_copies", "1", "--noise_db_range=-5"]
    assert dump_main([*args, *noisy_args]) == 0
    lines = (out / "speech_encoded.scp").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["u0", "u1", "u2"]
    assert all(len(line.split()) == 3 for line in lines)
    encoder = HFWhisperEncoder(model_dir=whisper_dir).eval()
    wave = torch.from_numpy(tones()["u1"])
    with torch.no_grad():
        expected, _, _ = encoder(wave[None], torch.tensor([len(wave)]))
    clean, noisy = (np.load(p).astype(np.float32) for p in lines[1].split()[1:])
    assert clean.shape == (50, 32)  # 1.0 s at 50 states per second
    assert np.allclose(clean, expected[0].numpy(), atol=1e-2)
    assert np.abs(noisy - clean).max() > 0.1
    # Resumed: what is there is kept, not encoded again.
    before = (out / "data" / "u1.1.npy").stat().st_mtime_ns
    assert dump_main([*args, *noisy_args]) == 0
    assert (out / "data" / "u1.1.npy").stat().st_mtime_ns == before

    reader = EncodedScpReader(str(out / "speech_encoded.scp"))
    np.random.seed(0)
    draws = {reader["u1"].tobytes() for _ in range(20)}
    assert len(draws) == 2 and reader["u1"].dtype == np.float32


def test_dump_refuses_bad_input_naming_it(data_dir, tmp_path, llm_dir, whisper_dir, caplog):
    out = str(tmp_path / "enc")
    unfrozen = write_config(tmp_path / "unfrozen.yaml", llm_dir, whisper_dir, freeze=())
    assert dump_main(["--config", unfrozen, "--data_dir", str(data_dir), "--out_dir", out]) == 1
    assert "does not freeze the audio encoder" in caplog.text
    sf.write(str(tmp_path / "data" / "audio" / "u1.wav"), np.zeros(8000, np.float32), 8000)
    config = write_config(tmp_path / "conf.yaml", llm_dir, whisper_dir)
    assert dump_main(["--config", config, "--data_dir", str(data_dir), "--out_dir", out]) == 1
    assert "utterance 'u1'" in caplog.text and "8000 Hz" in caplog.text
    assert not (tmp_path / "enc" / "speech_encoded.scp").exists()


def _dump(config, data_dir, out, *options):
    """Dumps; -> {utt: [variant arrays (T, D)]} as the scp lists them."""
    assert dump_main(["--config", config, "--data_dir", str(data_dir), "--out_dir", str(out), *options]) == 0
    lines = (out / "speech_encoded.scp").read_text().splitlines()
    return {line.split()[0]: [np.load(p) for p in line.split()[1:]] for line in lines}


def _same(a, b):
    return a.keys() == b.keys() and all(
        len(a[k]) == len(b[k]) and all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a
    )


def test_pipes_and_segments_dump_what_files_dump(data_dirs, tmp_path, llm_dir, whisper_dir):
    config = write_config(tmp_path / "conf.yaml", llm_dir, whisper_dir)
    dumps = {layout: _dump(config, data_dirs[layout], tmp_path / layout) for layout in LAYOUTS}
    assert _same(dumps["pipes"], dumps["files"]) and _same(dumps["segments"], dumps["files"])


def test_a_dump_made_differently_is_made_again(data_dir, tmp_path, llm_dir, whisper_dir, caplog):
    full = write_config(tmp_path / "full.yaml", llm_dir, whisper_dir)
    short = write_config(tmp_path / "short.yaml", llm_dir, whisper_dir, window=1.2)
    noisy = ["--noise_scp", str(tmp_path / "noise.scp"), "--noisy_copies", "1"]
    out = tmp_path / "enc"
    first = _dump(full, data_dir, out)
    assert [a.shape for a in first["u1"]] == [(50, 32)]
    # The window changed: every array is encoded again, as a fresh dump
    # with the new window encodes it.
    caplog.clear()
    rebuilt = _dump(short, data_dir, out)
    assert "audio_encoder.window: 'full' -> 1.2" in caplog.text
    assert _same(rebuilt, _dump(short, data_dir, tmp_path / "fresh"))
    assert not np.array_equal(rebuilt["u1"][0], first["u1"][0])
    # Noisy copies asked for: the new variants.
    assert [len(v) for v in _dump(short, data_dir, out, *noisy).values()] == [2, 2, 2]
    caplog.clear()
    again = _dump(short, data_dir, out, *noisy, "--noise_db_range", "0_5")
    assert "noise.db_range: [-5.0, 20.0] -> [0.0, 5.0]" in caplog.text
    assert _same(again, _dump(short, data_dir, tmp_path / "fresh_noisy", *noisy, "--noise_db_range", "0_5"))
    # A dump made before dumps recorded what made them is not trusted either.
    (out / "provenance.json").unlink()
    (out / "data" / "u0.0.npy").write_bytes(b"stale")
    caplog.clear()
    assert _same(_dump(short, data_dir, out, *noisy, "--noise_db_range", "0_5"), again)
    assert "provenance.json" in caplog.text


def test_the_dump_is_not_written_into_the_data_dir(data_dir, tmp_path, llm_dir, whisper_dir, caplog):
    config = write_config(tmp_path / "c.yaml", llm_dir, whisper_dir)
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    assert dump_main(["--config", config, "--data_dir", str(data_dir), "--out_dir", str(data_dir)]) == 1
    assert "is the data dir: give the dump a folder of its own" in caplog.text
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before


def test_the_audio_encoder_must_be_frozen_whole(data_dir, tmp_path, llm_dir, whisper_dir, caplog):
    # Whisper's weights all lie under encoders.audio.encoder.
    inner = write_config(tmp_path / "inner.yaml", llm_dir, whisper_dir, freeze=["encoders.audio.encoder"])
    assert len(_dump(inner, data_dir, tmp_path / "enc")) == 3
    partly = write_config(tmp_path / "partly.yaml", llm_dir, whisper_dir, freeze=["encoders.audio.encoder.layers"])
    assert dump_main(["--config", partly, "--data_dir", str(data_dir), "--out_dir", str(tmp_path / "x")]) == 1
    assert "does not freeze the audio encoder: encoders.audio.encoder.conv1.weight would train" in caplog.text


def test_reader_errors_name_utterance_and_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 3), np.float16))
    np.save(tmp_path / "b.npy", np.zeros(4, np.float16))
    (tmp_path / "x.scp").write_text(f"a {tmp_path / 'a.npy'}\nb {tmp_path / 'b.npy'}\nc {tmp_path / 'c.npy'}\n")
    reader = EncodedScpReader(str(tmp_path / "x.scp"))
    assert reader["a"].shape == (4, 3)
    with pytest.raises(ValueError, match="'b'.*expected \\(T, D\\)"):
        reader["b"]
    with pytest.raises(ValueError, match="'c'.*c.npy"):
        reader["c"]
    with pytest.raises(KeyError, match="'d' is not in"):
        reader["d"]


def test_model_on_dumped_outputs_computes_what_it_computes_from_audio(llm_dir, whisper_dir):
    model = build(llm_dir, whisper_dir, mode="asr", lora="ms").eval()
    batch, _ = make_batch(model.llm.tokenizer)
    with torch.no_grad():
        loss, _, _ = model(**batch)
        hs, hlens = model.encode(batch["speech"], batch["speech_lengths"])["audio"]
        encoded = {k: v for k, v in batch.items() if not k.startswith("speech")}
        loss_encoded, _, _ = model(**encoded, speech_encoded=hs, speech_encoded_lengths=hlens)
    assert torch.allclose(loss, loss_encoded)
