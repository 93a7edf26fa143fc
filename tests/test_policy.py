"""The per-utterance scale policy (``--scale adaptive``, ``espnet_mtsk.decoding.policy``)
on the tiny mode-all model: its choice on constructed clean, babble-masked
and silent inputs, the cost of its cascade, its operating points, the files
it lives in (missing, corrupt, packed) and ``bin/fit_policy`` end to end.

The model's scales: audio rates 2 and 4 of Whisper's 50 frames/s, video
rates 1 and 2 of 25 frames/s, and their cross product (a2, a4, v1, v2,
a2_v1, ...). Speech is espeak-ng GRID sentences (the tests that need it skip
without espeak-ng); babble is several other espeak talkers summed
(``local.synthgrid.noise.babble``), mixed in at -5 dB SNR.
"""

import json
import math
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_model_files
from espnet_mtsk.bin import fit_policy, pack
from espnet_mtsk.data.augment import mix_at_snr
from espnet_mtsk.decoding import policy_fit
from espnet_mtsk.decoding.avsr2text import AVSR2Text
from espnet_mtsk.decoding.policy import (
    DECODING_FILE,
    POLICY_FILE,
    AdaptivePolicy,
    Choice,
    OperatingPoint,
    pareto,
    pooled_states,
    run_choices,
    simulate,
)
from espnet_mtsk.decoding.scale_request import ScaleRequest, is_adaptive
from espnet_mtsk.scales import parse_scale

SECONDS = 1.5  # every clip: within the tiny Whisper's 2 s window, no padding between clips
SNR = -5.0
FEATURES = 64  # pooled audio states: mean and std of the tiny Whisper's 32 channels
DECODE = dict(beam_size=1, max_new_tokens=3)
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

# A made-up fitting-set WER (%) per scale: (clean, -5 dB babble). Audio alone
# is good when clean and bad in babble; the lips do not hear the babble; audio
# with video is good in both but reads more tokens.
WER = {
    "a2": (5, 45), "a4": (8, 50),
    "v1": (40, 40), "v2": (50, 50),
    "a2_v1": (4, 20), "a2_v2": (5, 22), "a4_v1": (6, 25), "a4_v2": (7, 28),
}
# With these costs (``rate_cost``) and tradeoff 0.2 the objective is, per scale:
#   sure it is clean:   a2 10 < a4 10.5 < a4_v2 12 < a2_v2 12.5 < ...
#   sure it is babble:  a2_v2 29.5 < a2_v1 30 < a4_v1 32.5 < a4_v2 33 < ... < a2 50
#   no sound:           v1 45 < v2 52.5
# So a2 is the choice while P(clean) > 17/19 (a4_v2 next), a2_v2 while
# P(clean) < 7/8.
TRADEOFF = 0.2


def rate_cost(scale_id):
    """Tokens/s the LLM reads at a scale: 50 / rate for audio, 25 / rate for video."""
    return sum({"audio": 50.0, "video": 25.0}[m] / r for m, r in parse_scale(scale_id).rates)


def hand_policy(tradeoff=TRADEOFF, threshold=None, weights=None, bias=None, wer=WER, points=None):
    """A policy over ``wer``'s scales with one operating point; without
    ``weights`` it ignores the sound (zero weights) and ``bias`` (default:
    sure it is clean) is its posterior's logits."""
    scales = list(wer)
    return AdaptivePolicy(
        conditions=["clean", "snr-5"],
        scales=scales,
        modalities=[list(parse_scale(s).modalities) for s in scales],
        weights=np.zeros((2, FEATURES)) if weights is None else weights,
        bias=np.array([10.0, -10.0]) if bias is None else bias,
        wer=np.array([wer[s] for s in scales], dtype=float).T,
        tokens_per_sec=np.array([rate_cost(s) for s in scales]),
        points=points or [OperatingPoint(tradeoff, threshold, 30.0, 10.0)],
        fit_set="handmade",
    )


def model_copy(folder: Path, model_dir: Path, policy=None):
    """The tiny model's config.yaml and model.pth copied into ``folder`` (so
    that what lies beside them is the test's), with ``policy`` saved as
    policy.json there. -> (config, model file) as strings."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "model.pth"):
        shutil.copy(model_dir / name, folder / name)
    if policy is not None:
        policy.save(folder / POLICY_FILE)
    return str(folder / "config.yaml"), str(folder / "model.pth")


def fixed_scale(avsr, batch, scale_id):
    """What the model's own ``recognize`` gives at one scale on ``batch``."""
    inputs = {k: batch.get(k) for k in ("speech", "speech_lengths", "video", "video_lengths")}
    return avsr.model.recognize(scale_id, **inputs, beam_size=avsr.beam_size, max_new_tokens=avsr.max_new_tokens)


def lips(seed, seconds=SECONDS):
    """Random 24x24 frames at 25 fps, as long as ``seconds`` of sound."""
    return np.random.default_rng(seed).uniform(0, 255, (int(seconds * 25), 24, 24)).astype(np.float32)


def tone(seconds, f0=150.0):
    """A harmonic tone with 4 Hz syllable-like amplitude modulation (speech
    enough for tests that do not depend on what the estimator hears)."""
    t = np.arange(int(seconds * 16000)) / 16000
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.1 * wave * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, llm_dir, whisper_dir):
    """config.yaml and model.pth of the tiny mode-all model; no policy."""
    return write_model_files(tmp_path_factory.mktemp("exp"), llm_dir, whisper_dir)


@pytest.fixture(scope="module")
def avsr(model_dir):
    """The tiny model at a fixed scale: pooled audio states and references."""
    return AVSR2Text(str(model_dir / "config.yaml"), str(model_dir / "model.pth"), **DECODE)


@pytest.fixture(scope="module")
def speech():
    """Espeak GRID sentences of five voices, exactly ``SECONDS`` long (peak
    0.5): {voice: [(text, wave)] of two sentences}; and a 6 s babble of six
    other talkers."""
    from local.synthgrid.grammar import random_sentence, transcript
    from local.synthgrid.noise import babble
    from local.synthgrid.speakers import draw_speakers

    rng = np.random.default_rng(0)
    groups = draw_speakers(0, {"test": 5, "noise": 6})
    n = int(SECONDS * 16000)
    voices = {}
    for v, speaker in enumerate(groups["test"]):
        voices[v] = []
        for i in range(2):
            words = random_sentence(rng)
            wave, _ = speaker.speak(words, 10 * v + i)
            wave = np.pad(wave[:n], (0, max(0, n - len(wave))))
            voices[v].append((transcript(words), (wave / np.abs(wave).max() * 0.5).astype(np.float32)))
    return voices, babble(groups["noise"], 6.0, rng)


def masked(wave, noise, seed):
    """``wave`` under the babble at -5 dB SNR."""
    return mix_at_snr(wave, noise, SNR, np.random.default_rng(seed)).astype(np.float32)


def pooled(avsr, waves):
    """Pooled audio encoder states (len(waves), 64), as the policy reads them."""
    batch = avsr.batch([(f"u{i}", {"speech": w}) for i, w in enumerate(waves)])
    with torch.no_grad():
        hs, hlens = avsr.model.encode(batch["speech"], batch["speech_lengths"], modalities=["audio"])["audio"]
    return pooled_states(hs, hlens)


# 1. The choice on constructed inputs.


@needs_espeak
def test_the_policy_hears_the_babble_and_reads_the_lips(tmp_path, model_dir, avsr, speech):
    voices, noise = speech
    # Fitted on three voices, clean and at -5 dB; asked about a fourth.
    clean = [wave for v in (0, 1, 2) for _, wave in voices[v]]
    noisy = [masked(w, noise, i) for i, w in enumerate(clean)]
    x = pooled(avsr, clean + noisy)
    y = np.array(["clean"] * len(clean) + ["snr-5"] * len(noisy))
    clf, weights, bias = policy_fit.fit_posterior(x, y, components=8, c=10.0)
    assert list(clf.classes_) == ["clean", "snr-5"]
    policy = hand_policy(weights=weights, bias=bias)
    new = voices[3][0][1]
    new_noisy = masked(new, noise, 99)
    # The estimator's premise: sure enough either way (see WER's comment).
    posterior = policy.posterior(pooled(avsr, [new, new_noisy]))
    assert posterior[0, 0] > 0.95 and posterior[1, 0] < 0.05, posterior

    adaptive = AVSR2Text(*model_copy(tmp_path, model_dir, policy), scale="adaptive", **DECODE)
    assert adaptive.scale == "adaptive"
    # Both have lips: audio alone is the policy's choice for the clean one.
    batch = adaptive.batch([("clean", {"speech": new, "video": lips(0)}),
                            ("noisy", {"speech": new_noisy, "video": lips(0)})])
    decoded = adaptive.decode_scales(batch, ["adaptive"])["adaptive"]
    assert decoded.passes == [["a2"], ["a2_v2"]]
    for i, (uid, scale) in enumerate([("clean", "a2"), ("noisy", "a2_v2")]):
        alone = adaptive.batch([(uid, {"speech": [new, new_noisy][i], "video": lips(0)})])
        reference = fixed_scale(adaptive, alone, scale)
        assert decoded.num_tokens[i] == int(reference.num_tokens[0]) > 0
        assert decoded.texts[i] == reference.texts[0]
    assert decoded.num_tokens[1] > decoded.num_tokens[0]
    assert 0 < decoded.estimator_seconds <= decoded.seconds

    # Babble but no lips: the best audio-only scale (a2 50 < a4 52.5).
    deaf = adaptive.single_batch("sound_only", speech=new_noisy)
    decoded = adaptive.decode_scales(deaf, ["adaptive"])["adaptive"]
    assert decoded.passes == [["a2"]]
    assert decoded.num_tokens == [int(fixed_scale(adaptive, deaf, "a2").num_tokens[0])]

    # No sound: a uniform prior, and only the lips-only scales are usable.
    silent = adaptive.single_batch("silent", video=lips(1))
    decoded = adaptive.decode_scales(silent, ["adaptive"])["adaptive"]
    assert decoded.passes == [["v1"]]
    assert decoded.num_tokens == [int(fixed_scale(adaptive, silent, "v1").num_tokens[0])]


# 2. The cascade and what it costs.


def test_a_cascade_decodes_twice_and_is_charged_twice(tmp_path, model_dir, monkeypatch):
    # Scores are mean log-probabilities (<= 0): threshold 1 always sends the
    # audio-only first choice (a2: sure it is clean) on to the best scale
    # with video there (a4_v2, objective 12); threshold -1e9 never does.
    always = hand_policy(threshold=1.0)
    adaptive = AVSR2Text(*model_copy(tmp_path, model_dir, always), scale="adaptive", **DECODE)
    assert adaptive.policy.choose(np.array([[1.0, 0.0]]), adaptive.policy.point()) == [Choice("a2", "a4_v2", 1.0)]
    # Two utterances of different lengths: one padded batch, both cascaded.
    batch = adaptive.batch([("long", {"speech": tone(1.0), "video": lips(2, 1.0)}),
                            ("short", {"speech": tone(0.72, 220.0), "video": lips(3, 0.72)})])
    decoded = adaptive.decode_scales(batch, ["adaptive"])["adaptive"]
    first, second = fixed_scale(adaptive, batch, "a2"), fixed_scale(adaptive, batch, "a4_v2")
    assert decoded.passes == [["a2", "a4_v2"], ["a2", "a4_v2"]]
    assert decoded.num_tokens == (first.num_tokens + second.num_tokens).tolist()
    assert decoded.num_tokens[0] > decoded.num_tokens[1]  # the longer one reads more
    assert decoded.scores == pytest.approx(second.scores.tolist())
    # The untrained model says the same at every scale: tag each scale's
    # texts to see which pass's are kept.
    recognize = adaptive.model.recognize

    def tagged(scale_id, **kwargs):
        hyps = recognize(scale_id, **kwargs)
        return hyps._replace(texts=[f"{scale_id}:{t}" for t in hyps.texts])

    monkeypatch.setattr(adaptive.model, "recognize", tagged)
    decoded = adaptive.decode_scales(batch, ["adaptive"])["adaptive"]
    assert decoded.texts == [f"a4_v2:{t}" for t in second.texts]

    adaptive._policy = hand_policy(threshold=-1e9)
    # No chosen scale reads the lips: the video encoder does not run.
    monkeypatch.setattr(adaptive.model.encoders["video"], "forward", lambda *a: pytest.fail("video encoded"))
    decoded = adaptive.decode_scales(batch, ["adaptive"])["adaptive"]
    assert decoded.passes == [["a2"], ["a2"]]
    assert decoded.num_tokens == first.num_tokens.tolist()
    assert decoded.texts == [f"a2:{t}" for t in first.texts]
    # A fixed scale and two budgets in one call: Whisper runs once for all.
    encode, calls = adaptive.model.encode, []
    monkeypatch.setattr(adaptive.model, "encode", lambda **kw: calls.append(kw["modalities"]) or encode(**kw))
    out = adaptive.decode_scales(batch, ["a2", "adaptive", "adaptive@31"])
    assert calls == [["audio"]] and out["adaptive@31"].passes == out["adaptive"].passes == [["a2"], ["a2"]]


def test_simulate_charges_both_passes():
    wer = {"a2": (0, 80), "v1": (50, 50), "a2_v1": (10, 20)}
    policy = hand_policy(wer=wer)
    # Objectives at tradeoff 0.1 (a2 25, v1 25, a2_v1 50 tokens/s):
    # u0 clean: a2 2.5 (a2_v1 15 second); u1 babble: a2_v1 25; u2 90 % clean: a2 10.5.
    posterior = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    errors = np.array([[0, 3, 1], [5, 3, 2], [4, 3, 0]], dtype=float)
    tokens = np.array([[10, 10, 20], [12, 12, 24], [8, 8, 16]], dtype=float)
    # u0's a2 scores above the threshold -0.5, u2's below; u1 is not audio-only.
    scores = np.array([[-0.2, -1.0, -0.1], [-2.0, -1.0, -0.3], [-0.9, -1.0, -0.4]])
    cascade = OperatingPoint(0.1, -0.5, 0.0, 0.0)
    assert policy.choose(posterior, cascade) == [
        Choice("a2", "a2_v1", -0.5), Choice("a2_v1"), Choice("a2", "a2_v1", -0.5)]
    assert simulate(policy, posterior, cascade, errors, tokens, scores) == (0 + 2 + 0, 10 + 24 + (8 + 16))
    assert simulate(policy, posterior, OperatingPoint(0.1, None, 0.0, 0.0), errors, tokens, scores) == (
        0 + 2 + 4, 10 + 24 + 8)
    # The threshold is strict: a score equal to it keeps the first pass.
    assert not Choice("a2", "a2_v1", -0.5).needs_second(-0.5) and Choice("a2", "a2_v1", -0.5).needs_second(-0.51)
    assert not Choice("a2").needs_second(-100.0)
    # Lips only: v1. Sound only: a2 without a cascade (no scale with video
    # is usable). Nothing usable: an error.
    assert policy.choose(posterior[:1], cascade, present=["video"]) == [Choice("v1")]
    assert policy.choose(posterior[:1], cascade, present=["audio"]) == [Choice("a2")]
    with pytest.raises(ValueError, match=r"no scale of the policy .* works with \['tactile'\] only"):
        policy.choose(posterior, cascade, present=["tactile"])


def test_choices_run_a_pass_a_scale_at_a_time():
    choices = [Choice("a2", "a2_v1", -0.5), Choice("a2_v1"), Choice("a2", "a2_v1", -0.5), Choice("v1")]
    first_scores = {0: -0.2, 1: -0.1, 2: -0.9, 3: -3.0}
    calls = []

    def decode(scale, utterances):
        calls.append((scale, utterances))
        return [first_scores[u] if len(calls) <= 3 else 0.0 for u in utterances]

    passes = run_choices(choices, decode)
    # One call per scale and pass; only u2 scored below its threshold.
    assert calls == [("a2", [0, 2]), ("a2_v1", [1]), ("v1", [3]), ("a2_v1", [2])]
    assert passes == [["a2"], ["a2_v1"], ["a2", "a2_v1"], ["v1"]]


# 3. Operating points, the Pareto front, the file format and the ids.


def test_a_budget_picks_the_most_accurate_point_within_it():
    points = [OperatingPoint(0.0, None, 50.0, 5.0), OperatingPoint(0.1, -0.5, 40.0, 8.0),
              OperatingPoint(0.2, None, 30.0, 8.0), OperatingPoint(1.0, None, 12.5, 20.0)]
    policy = hand_policy(points=points)
    assert policy.point() == points[0]
    assert policy.point(50.0) == points[0]  # the budget is inclusive
    assert policy.point(49.9) == points[2]  # equal WER: the cheaper
    assert policy.point(29.0) == points[3]
    with pytest.raises(ValueError, match=r"fits 12\.0 tokens/s; the cheapest needs 12\.50 tokens/s on handmade"):
        policy.point(12.0)


def test_pareto_keeps_the_points_nothing_beats():
    def p(tokens, wer):
        return OperatingPoint(0.0, None, tokens, wer)

    front = [p(10, 20), p(20, 15), p(40, 10)]
    dominated = [p(25, 18), p(30, 15), p(10, 22), p(45, 10), p(50, 11)]
    assert pareto(dominated[::-1] + front[::-1]) == front
    assert pareto([]) == []


def test_the_policy_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    policy = hand_policy(weights=rng.standard_normal((2, FEATURES)), bias=rng.standard_normal(2),
                         points=[OperatingPoint(0.0, None, 37.5, 4.1), OperatingPoint(0.123, -0.4321, 20.0, 9.9)])
    policy.wer = policy.wer + rng.uniform(0, 1, policy.wer.shape)
    policy.save(tmp_path / POLICY_FILE)
    loaded = AdaptivePolicy.load(tmp_path / POLICY_FILE)
    for name in ("weights", "bias", "wer", "tokens_per_sec"):
        assert np.array_equal(getattr(loaded, name), getattr(policy, name)), name
    for name in ("conditions", "scales", "modalities", "points", "fit_set"):
        assert getattr(loaded, name) == getattr(policy, name), name
    x = rng.standard_normal((3, FEATURES))
    assert np.array_equal(loaded.posterior(x), policy.posterior(x))
    assert loaded.posterior(x).sum(1) == pytest.approx(np.ones(3))
    with pytest.raises(ValueError, match="reads 64 pooled audio features, got 10"):
        loaded.posterior(x[:, :10])


def test_scale_requests_parse_once_and_print_back():
    assert ScaleRequest.parse("adaptive@12") == ScaleRequest("adaptive", budget=12.0)
    assert ScaleRequest.parse("adaptive@2.5").budget == 2.5 and ScaleRequest.parse("adaptive").budget is None
    assert ScaleRequest.parse("a2_v1") == ScaleRequest("fixed", "a2_v1")
    assert ScaleRequest.parse(None) == ScaleRequest("fixed") and ScaleRequest.parse("auto").kind == "auto"
    assert ScaleRequest.parse("adaptively") == ScaleRequest("fixed", "adaptively")
    for text in ("adaptive@12", "adaptive@2.5", "adaptive", "auto", "a2_v1"):
        assert str(ScaleRequest.parse(text)) == text
    assert str(ScaleRequest.policy(12.0)) == "adaptive@12" and str(ScaleRequest.policy(None)) == "adaptive"
    assert is_adaptive("adaptive") and is_adaptive("adaptive@12")
    assert not is_adaptive("a2_v1") and not is_adaptive(None) and not is_adaptive("auto")
    with pytest.raises(ValueError, match=r"'adaptive@x': the budget after '@' must be tokens/s"):
        ScaleRequest.parse("adaptive@x")


def test_fit_posterior_is_one_affine_map():
    """The folded map gives the scikit-learn pipeline's probabilities, for
    two classes (one row kept by scikit-learn) and for three."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 12)) * rng.uniform(0.1, 10, 12) + rng.uniform(-5, 5, 12)
    for labels in (["clean", "snr-5"], ["clean", "snr0", "snr-5"]):
        y = np.array([labels[i % len(labels)] for i in range(30)])
        x_fit = x + 3.0 * (y == labels[-1])[:, None]  # separable enough to matter
        clf, weights, bias = policy_fit.fit_posterior(x_fit, y, components=5, c=1.0)
        policy = AdaptivePolicy(list(clf.classes_), [], [], weights, bias, np.zeros((len(labels), 0)),
                                np.zeros(0), [])
        assert np.allclose(policy.posterior(x_fit), clf.predict_proba(x_fit), atol=1e-9)


def test_fit_posterior_is_the_same_every_time_on_a_recipe_sized_set():
    """dev_noisy and train_noisy's pooled Whisper states are about 950 x 768:
    there scikit-learn's default PCA is a randomised SVD; the fit must not be."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((520, 510))
    y = np.array(["clean", "snr0"] * 260)
    first, again = (policy_fit.fit_posterior(x + (y == "snr0")[:, None], y, components=8, c=1.0) for _ in range(2))
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[2], again[2])


# 4. The policy's file: missing, corrupt, for another model, packed.


def test_missing_or_wrong_policy_files_are_clear_errors(tmp_path, model_dir):
    with pytest.raises(FileNotFoundError) as error:
        AVSR2Text(*model_copy(tmp_path / "none", model_dir), scale="adaptive")
    message = str(error.value)
    assert f"{tmp_path}/none/policy.json not found" in message
    assert "stage 13" in message and "espnet_mtsk.bin.fit_policy" in message and "--policy_file" in message

    config, model = model_copy(tmp_path / "corrupt", model_dir)
    Path(model).with_name(POLICY_FILE).write_text('{"conditions": ["clean"], "scales": [')
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}/corrupt/policy.json: not an adaptive policy")):
        AVSR2Text(config, model, scale="adaptive")
    # Valid JSON, but not a policy.
    Path(model).with_name(POLICY_FILE).write_text(json.dumps({"scale_table": []}))
    with pytest.raises(ValueError, match=r"corrupt/policy\.json: not an adaptive policy \('conditions'\)"):
        AVSR2Text(config, model, scale="adaptive")
    # Parts that do not fit together are found on loading, not mid-decode.
    hand_policy().save(Path(model).with_name(POLICY_FILE))
    state = json.loads(Path(model).with_name(POLICY_FILE).read_text())
    shape = (2, len(WER))
    for key, value, says in (("wer", [[1.0]], f"wer is (1, 1), not {shape}"), ("points", [], "no operating points")):
        Path(model).with_name(POLICY_FILE).write_text(json.dumps({**state, key: value}))
        with pytest.raises(ValueError, match=re.escape(f"corrupt/policy.json: not an adaptive policy ({says}")):
            AVSR2Text(config, model, scale="adaptive")

    foreign = hand_policy(wer={"a2": (5, 45), "a8": (9, 60), "a2_v5": (4, 20)})
    with pytest.raises(ValueError, match=r"policy\.json: scales \['a2_v5', 'a8'\] are not the model's \['a2', 'a4'"):
        AVSR2Text(*model_copy(tmp_path / "foreign", model_dir, foreign), scale="adaptive")

    # A budget below every fitted point fails when the decoder is made, not mid-set.
    config, model = model_copy(tmp_path / "budget", model_dir, hand_policy())
    with pytest.raises(ValueError, match=r"fits 5\.0 tokens/s; the cheapest needs 30\.00 tokens/s"):
        AVSR2Text(config, model, scale="adaptive@5")
    with pytest.raises(ValueError, match=r"fits 5\.0 tokens/s"):
        AVSR2Text(config, model, scale="adaptive", budget_tokens_per_sec=5.0)
    assert AVSR2Text(config, model, scale="adaptive", budget_tokens_per_sec=31.0).scale == "adaptive@31"
    # A segment the policy cannot serve is named when its scale is resolved
    # (long-form decoding leaves it out with that line), not mid-batch.
    lips_and_sound = hand_policy(wer={"a2_v2": (4, 20), "a4_v2": (6, 25)})
    avsr = AVSR2Text(*model_copy(tmp_path / "av", model_dir, lips_and_sound), scale="adaptive")
    assert avsr.resolve_scale("adaptive", ["audio", "video"]) == "adaptive"
    with pytest.raises(ValueError, match=r"talk\.mp4 3\.00-5\.00 s: no scale of the policy .* \['audio'\] only"):
        avsr.resolve_scale("adaptive", ["audio"], name="talk.mp4 3.00-5.00 s")
    # Operating points are fitted in tokens/s: a real-time budget is refused, not ignored.
    with pytest.raises(ValueError, match="--budget_rtf does not apply to --scale adaptive"):
        AVSR2Text(config, model, scale="adaptive", budget_rtf=0.1)
    # --policy_file wins over the one beside the model.
    elsewhere = tmp_path / "elsewhere.json"
    foreign.save(elsewhere)
    with pytest.raises(ValueError, match="elsewhere.json: scales"):
        AVSR2Text(config, model, scale="adaptive", policy_file=str(elsewhere))


@pytest.fixture
def zoo_cache(tmp_path, monkeypatch):
    """espnet_model_zoo's unpacking and our sha256 digests go under tmp_path."""
    from espnet_model_zoo.downloader import ModelDownloader

    init = ModelDownloader.__init__
    monkeypatch.setattr(ModelDownloader, "__init__", lambda self, cachedir=None: init(self, tmp_path / "zoo"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_the_policy_travels_in_the_packed_model(tmp_path, model_dir, zoo_cache, capsys):
    policy = hand_policy(wer={s: WER[s] for s in ("a4", "v2", "a4_v2")})
    config, model = model_copy(tmp_path / "exp", model_dir, policy)
    out = tmp_path / "model.zip"
    pack.main(["--asr_train_config", config, "--asr_model_file", model, "--outpath", str(out),
               "--option", str(Path(model).with_name(POLICY_FILE))])
    assert any(n.endswith(POLICY_FILE) for n in zipfile.ZipFile(out).namelist())
    shutil.rmtree(tmp_path / "exp")  # nothing is read from where it was packed

    packed = AVSR2Text.from_pretrained(model_tag=str(out), scale="adaptive", **DECODE)
    assert packed.policy.scales == ["a4", "v2", "a4_v2"]
    assert np.array_equal(packed.policy.wer, policy.wer)
    assert Path(packed.policy_file).name == POLICY_FILE and (tmp_path / "zoo") in Path(packed.policy_file).parents

    # Stage 15's way: unpack, then decode from the files it names.
    capsys.readouterr()
    pack.main(["--unpack", str(out), "--outdir", str(tmp_path / "unpacked")])
    files = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines() if "=" in line)
    assert Path(files["asr_model_file"]).with_name(POLICY_FILE).is_file()
    unpacked = AVSR2Text(files["asr_train_config"], files["asr_model_file"], scale="adaptive")
    assert unpacked.policy.scales == ["a4", "v2", "a4_v2"]


# 5. bin/fit_policy end to end, and decoding with what it writes.

FIT_SCALES = ["a2", "a4", "v1", "a2_v1"]
# Word errors per utterance (of 6 words) of each condition's 4 utterances:
# the oracle is a2 when clean and a2_v1 in babble, both without errors.
ERRORS = {
    "a2": {"clean": [0, 0, 0, 0], "snr-5": [3, 2, 4, 3]},
    "a4": {"clean": [1, 0, 1, 0], "snr-5": [4, 5, 4, 5]},
    "v1": {"clean": [2, 2, 1, 1], "snr-5": [2, 1, 2, 1]},
    "a2_v1": {"clean": [1, 1, 0, 1], "snr-5": [0, 0, 0, 0]},
}
# Per 1.5 s utterance: ceil(1.5 * 50 / rate) audio + ceil(1.5 * 25 / rate) video tokens.
TOKENS = {s: sum(math.ceil(SECONDS * {"audio": 50, "video": 25}[m] / r) for m, r in parse_scale(s).rates)
          for s in ["a2", "a4", "v1", "v2", "a2_v1", "a2_v2", "a4_v1", "a4_v2"]}


def wrong(text, n):
    """``text`` with its first ``n`` words substituted: ``n`` word errors."""
    words = text.split()
    return " ".join(["zzz"] * n + words[n:])


@pytest.fixture(scope="module")
def fit_set(tmp_path_factory, speech):
    """A data dir of 8 utterances (two speakers, each two sentences clean and
    at -5 dB, with random lips in video.scp) and its decoding at every scale of the model with ``ERRORS``
    word errors (6 for the scales outside FIT_SCALES), ``TOKENS`` tokens and
    a score of -0.1 - 0.2 per error. -> (data dir, decode dir, uid -> condition)."""
    import soundfile

    voices, noise = speech
    root = tmp_path_factory.mktemp("fit")
    data, decode = root / "data", root / "decode"
    (data / "wav").mkdir(parents=True)
    rows = {name: [] for name in ("wav.scp", "video.scp", "text", "utt2spk", "utt2condition")}
    utts = []  # (uid, text, condition, index within its condition)
    for s, (spk, voice) in enumerate([("spkA", 0), ("spkB", 1)]):
        for i, (text, wave) in enumerate(voices[voice]):
            for condition, audio in (("clean", wave), ("snr-5", masked(wave, noise, 10 * s + i))):
                uid = f"{spk}-{i}-{condition}"
                soundfile.write(data / "wav" / f"{uid}.wav", audio, 16000)
                rows["wav.scp"].append(f"{uid} {data / 'wav' / f'{uid}.wav'}")
                np.save(data / "wav" / f"{uid}.npy", lips(len(utts)).astype(np.uint8))
                rows["video.scp"].append(f"{uid} {data / 'wav' / f'{uid}.npy'}")
                rows["text"].append(f"{uid} {text}")
                rows["utt2spk"].append(f"{uid} {spk}")
                rows["utt2condition"].append(f"{uid} {condition}")
                utts.append((uid, text, condition, 2 * s + i))
    for name, lines in rows.items():
        (data / name).write_text("\n".join(lines) + "\n")
    for scale in TOKENS:
        best = decode / scale / "1best_recog"
        best.mkdir(parents=True)
        files = {name: [] for name in ("text", "num_tokens", "score", "speech_seconds")}
        for uid, text, condition, k in utts:
            n = ERRORS[scale][condition][k] if scale in ERRORS else 6
            files["text"].append(f"{uid} {wrong(text, n)}")
            files["num_tokens"].append(f"{uid} {TOKENS[scale]}")
            files["score"].append(f"{uid} {-0.1 - 0.2 * n:.4f}")
            files["speech_seconds"].append(f"{uid} {SECONDS:.3f}")
        for name, lines in files.items():
            (best / name).write_text("\n".join(lines) + "\n")
    (decode / DECODING_FILE).write_text(json.dumps(FIT_DECODING))
    return data, decode, {uid: condition for uid, _, condition, _ in utts}


FIT_DECODING = {"beam_size": 4, "max_new_tokens": 32, "precision": "float32"}


def fit_args(model_dir, data, decode, output, *more):
    return ["--asr_train_config", str(model_dir / "config.yaml"), "--asr_model_file", str(model_dir / "model.pth"),
            "--data_dir", str(data), "--utt2condition", str(data / "utt2condition"), "--decode_dir", str(decode),
            "--output", str(output), "--scales", *FIT_SCALES, "--components", "8", "--regularisation", "10", *more]


@needs_espeak
def test_fit_policy_end_to_end(tmp_path, model_dir, avsr, fit_set):
    data, decode, condition = fit_set
    fit_policy.main(fit_args(model_dir, data, decode, tmp_path / "out" / POLICY_FILE))
    policy = AdaptivePolicy.load(tmp_path / "out" / POLICY_FILE)
    assert policy.conditions == ["clean", "snr-5"] and policy.scales == FIT_SCALES
    assert policy.modalities == [["audio"], ["audio"], ["video"], ["audio", "video"]]
    assert policy.fit_set == "data" and policy.weights.shape == (2, FEATURES)
    assert policy.decoding == FIT_DECODING
    # 24 reference words per condition.
    expected_wer = [[0.0, 100 * 2 / 24, 100 * 6 / 24, 100 * 3 / 24], [100 * 12 / 24, 100 * 18 / 24, 100 * 6 / 24, 0.0]]
    np.testing.assert_allclose(policy.wer, expected_wer, rtol=1e-12)
    np.testing.assert_allclose(policy.tokens_per_sec, [38 / 1.5, 19 / 1.5, 38 / 1.5, 76 / 1.5], rtol=1e-12)

    points = policy.points
    assert len(points) >= 2
    assert all(a.tokens_per_sec < b.tokens_per_sec and a.wer > b.wer for a, b in zip(points, points[1:]))
    # The cheapest: a4 everywhere (the largest tradeoff); the most accurate
    # makes no error, at no more than the oracle's cost (a2 when clean, a2_v1
    # in babble), reached because the held-out posteriors tell the
    # conditions apart.
    assert (points[0].tokens_per_sec, points[0].wer) == (round(19 / 1.5, 3), round(100 * 20 / 48, 3))
    assert policy.point().wer == 0.0 and policy.point().tokens_per_sec <= round((4 * 38 + 4 * 76) / 12, 3)
    # Every recorded point is what simulating it on the set gives.
    utts = sorted(condition)
    features = policy_fit.audio_features(avsr, data / "wav.scp", batch_size=8)
    x = np.stack([features[u] for u in utts])
    y = np.array([condition[u] for u in utts])
    posterior = policy_fit.held_out_posteriors(x, y, np.array([u.split("-")[0] for u in utts]), policy.conditions,
                                        components=8, c=10.0)
    assert np.all((posterior[:, 0] > 0.5) == (y == "clean")), posterior
    index = {u: (condition[u], 2 * (u.startswith("spkB")) + int(u.split("-")[1])) for u in utts}
    errors = np.array([[ERRORS[s][c][k] for s in FIT_SCALES] for c, k in map(index.get, utts)], dtype=float)
    tokens = np.array([[TOKENS[s] for s in FIT_SCALES]] * len(utts), dtype=float)
    scores = -0.1 - 0.2 * errors
    for p in points:
        e, t = simulate(policy, posterior, p, errors, tokens, scores)
        assert (round(t / 12, 3), round(100 * e / 48, 3)) == (p.tokens_per_sec, p.wer), p


@needs_espeak
def test_fit_policy_names_what_is_missing(tmp_path, model_dir, fit_set):
    data, decode, condition = fit_set
    holes = shutil.copytree(decode, tmp_path / "decode")
    text = holes / "a2_v1" / "1best_recog" / "text"
    lines = text.read_text().splitlines()
    text.write_text("\n".join(lines[1:]) + "\n")
    first = sorted(condition)[0]
    assert lines[0].startswith(first + " ")
    with pytest.raises(ValueError, match=re.escape(f"{text} lacks {[first]}: decode {data} at every scale first")):
        fit_policy.main(fit_args(model_dir, data, holes, tmp_path / POLICY_FILE))
    assert not (tmp_path / POLICY_FILE).exists()
    text.write_text("\n".join(lines) + "\n")
    (holes / DECODING_FILE).unlink()
    with pytest.raises(ValueError, match=re.escape(f"{holes / DECODING_FILE} not found")):
        fit_policy.main(fit_args(model_dir, data, holes, tmp_path / POLICY_FILE))

    partial = tmp_path / "utt2condition"
    partial.write_text("".join(f"{u} {c}\n" for u, c in sorted(condition.items())[1:]))
    args = fit_args(model_dir, data, decode, tmp_path / POLICY_FILE)
    args[args.index("--utt2condition") + 1] = str(partial)
    with pytest.raises(ValueError, match=re.escape(f"{partial} lacks 1 utterances of {data}: ['{first}']")):
        fit_policy.main(args)

    # More audio for the estimator must be labelled with the set's conditions.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "wav.scp").write_text((data / "wav.scp").read_text())
    (extra / "utt2condition").write_text("".join(f"{u} snr-10\n" for u in sorted(condition)))
    with pytest.raises(ValueError, match=re.escape(f"conditions ['snr-10'] are not among {data}'s ['clean', 'snr-5']")):
        fit_policy.main(fit_args(model_dir, data, decode, tmp_path / POLICY_FILE, "--estimator_dirs", str(extra)))
    assert not (tmp_path / POLICY_FILE).exists()


@needs_espeak
def test_inference_writes_the_choices_and_scoring_reads_them(tmp_path, model_dir, avsr, fit_set, caplog):
    """avsr_inference with ``--scales a2 a2_v1 adaptive`` on the set: the
    policy (fitted here on the set's own states) writes each utterance's
    passes and estimator time, its tokens are every pass's and its score the
    last pass's, and policy_scoring counts the choices per condition."""
    from espnet_mtsk.bin import avsr_inference
    from espnet_mtsk.reporting.policy_scoring import read_run
    from espnet_mtsk.reporting.scoring import score_dir

    data, _, condition = fit_set
    features = policy_fit.audio_features(avsr, data / "wav.scp", batch_size=8)
    utts = sorted(condition)
    _, weights, bias = policy_fit.fit_posterior(
        np.stack([features[u] for u in utts]), np.array([condition[u] for u in utts]), components=8, c=10.0)
    # At tradeoff 0.2, clean: a2 10 < a4 10.5 < a2_v1 14, and a cascade on to
    # a2_v1 (threshold 1: always); babble: a2_v1 30 < a4 52.5 < a2 65.
    policy = hand_policy(wer={"a2": (5, 60), "a4": (8, 50), "a2_v1": (4, 20)}, weights=weights, bias=bias,
                         threshold=1.0)
    policy.decoding = FIT_DECODING
    config, model = model_copy(tmp_path / "exp", model_dir, policy)
    out = tmp_path / "decode"
    avsr_inference.main(["--output_dir", str(out), "--asr_train_config", config, "--asr_model_file", model,
                         "--data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                         "--data_path_and_name_and_type", f"{data / 'video.scp'},video,video",
                         "--scales", "a2", "a2_v1", "adaptive", "--batch_size", "4",
                         "--beam_size", "1", "--max_new_tokens", "3"])

    # The decoding says how it was made; a policy fitted otherwise is said to be.
    assert json.loads((out / DECODING_FILE).read_text()) == {"beam_size": 1, "max_new_tokens": 3, "precision": "float32"}
    assert "fitted on decodings with beam_size 4, max_new_tokens 32; this decoding uses beam_size 1, " \
        "max_new_tokens 3" in caplog.text

    def read(scale, name):
        return dict(line.split(" ", 1) if " " in line else (line, "")
                    for line in (out / scale / "1best_recog" / name).read_text().splitlines())

    chosen = read("adaptive", "scale")
    assert chosen == {u: "a2>a2_v1" if c == "clean" else "a2_v1" for u, c in condition.items()}
    a2, a2_v1 = read("a2", "num_tokens"), read("a2_v1", "num_tokens")
    assert read("adaptive", "num_tokens") == {
        u: str(int(a2[u]) + int(a2_v1[u])) if c == "clean" else a2_v1[u] for u, c in condition.items()}
    assert read("adaptive", "score") == read("a2_v1", "score")
    assert read("adaptive", "text") == read("a2_v1", "text")
    assert read("adaptive", "speech_seconds") == read("a2", "speech_seconds")
    assert all(float(v) > 0 for v in read("adaptive", "estimator_seconds").values())
    assert not (out / "a2" / "1best_recog" / "scale").exists()
    assert not (out / "a2" / "1best_recog" / "estimator_seconds").exists()

    run = read_run(score_dir(data / "text", out / "adaptive", "fit", "adaptive"), data / "text",
                   out / "adaptive", condition)
    assert run.chosen == {"clean": Counter({"a2>a2_v1": 4}), "snr-5": Counter({"a2_v1": 4})}
    assert run.estimator_rtf > 0
    total = sum(int(n) for n in read("adaptive", "num_tokens").values())
    assert run.score.tokens_per_sec == pytest.approx(total / sum(float(v) for v in read("a2", "speech_seconds").values()))
