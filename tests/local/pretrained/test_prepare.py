"""local.pretrained.prepare: errors that name what is missing, nothing
half-written; and (slow) the real packages converted and used."""

import re

import pytest

from local.pretrained import prepare as prep


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_missing_package_names_it_and_the_hub_id(offline, monkeypatch, tmp_path):
    source = prep.Source("org/model", "not-a-package==1.0", "not_a_package_xyz", "model.bin", prep._gguf)
    monkeypatch.setitem(prep.SOURCES, "thing", source)
    assert prep.main(["--out_dir", str(tmp_path), "thing"]) == 1
    with pytest.raises(ModuleNotFoundError, match=r"not-a-package is not installed.*org/model.*pip install not-a-package==1.0"):
        prep.prepare("thing", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failed_conversion_leaves_nothing_and_a_whole_folder_is_kept(offline, monkeypatch, tmp_path):
    def broken(src, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise ValueError(f"{src}: corrupt")

    # Any installed package serves as the "package"; its __init__.py as the weights.
    source = prep.Source("org/model", "pytest", "pytest", "__init__.py", broken)
    monkeypatch.setitem(prep.SOURCES, "thing", source)
    with pytest.raises(ValueError, match="corrupt"):
        prep.prepare("thing", tmp_path)
    assert list(tmp_path.iterdir()) == []

    def works(src, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return {"diff": 0.0}

    monkeypatch.setitem(prep.SOURCES, "thing", prep.Source("org/model", "pytest", "pytest", "__init__.py", works))
    out = prep.prepare("thing", tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "origin.json"]
    monkeypatch.setitem(prep.SOURCES, "thing", source)
    assert prep.prepare("thing", tmp_path) == out  # kept: the broken converter is not run again


@pytest.mark.slow
def test_real_whisper_converts_and_transcribes(real_parts):
    import jiwer
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out, wave, sentence = real_parts
    origin = (out / "whisper-tiny.en" / "origin.json").read_text()
    diff = re.search(r'"max_encoder_diff_vs_ctranslate2": ([0-9.e-]+)', origin)
    if diff:  # CTranslate2 installed: the encoders agree to float16 rounding
        assert float(diff.group(1)) < 1e-3
    folder = str(out / "whisper-tiny.en")
    processor = WhisperProcessor.from_pretrained(folder)
    whisper = WhisperForConditionalGeneration.from_pretrained(folder)
    feats = processor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features
    text = processor.batch_decode(whisper.generate(feats, max_new_tokens=20), skip_special_tokens=True)[0]
    assert jiwer.wer(sentence, re.sub(r"[^a-z ]", "", text.lower()).strip()) == 0.0, text


@pytest.mark.slow
def test_real_whisper_short_window_states_stay_close_to_the_full_windows(real_parts):
    """Measured on this sentence (2.4 s): mean cosine similarity per state
    0.94 for a 3 s window, 0.92 for the utterance's own length, against
    Whisper's 30 s window; the first states agree best."""
    import torch

    from espnet_mtsk.encoders.whisper import HFWhisperEncoder

    out, wave, _ = real_parts
    folder = str(out / "whisper-tiny.en")
    lens = torch.tensor([wave.numel()])
    with torch.no_grad():
        full, _, _ = HFWhisperEncoder(model_dir=folder).eval()(wave[None], lens)
        for window, floor in ((3.0, 0.9), ("longest", 0.88)):
            short, _, _ = HFWhisperEncoder(model_dir=folder, window=window).eval()(wave[None], lens)
            cos = torch.nn.functional.cosine_similarity(short, full, dim=-1)[0]
            assert floor < cos.mean() < 0.999, (window, cos.mean())


@pytest.mark.slow
def test_real_smollm2_converts_and_answers(real_parts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = str(real_parts[0] / "smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    llm = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    answer = tokenizer.decode(llm.generate(ids, max_new_tokens=4, do_sample=False)[0, ids.size(1):])
    assert "Paris" in answer, answer
