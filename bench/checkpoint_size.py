#!/usr/bin/env python3
"""Checkpoint and packed-model sizes before and after save_strategy
required_grad_only, and the time to save one epoch file.

Two configs, each with its pretrained parts made here with random weights
in their real shapes, and built as ESPnet's trainer builds it (the model
cast to float32, --freeze_param applied, init_param files loaded):

- ``synthgrid``: the SynthGRID recipe's training config with the stand-in
  LLM of its size; a Whisper folder it names gets the shape of the model in
  its name; encoders the config gives no pretrained weights come from
  init_param files, as the recipe's stage 9 makes them.
- ``lrs3``: conf/tuning/train_avsr_mtsk_avgpool_ms.yaml with Llama-3.2-1B
  (its 128,256-token vocabulary, bfloat16 folder), Whisper medium.en and an
  AV-HuBERT Large checkpoint file, as egs2/lrs3/avsr1/run.sh passes them.

Before: ESPnet's ``save_strategy: all`` (every weight in each epoch file and
checkpoint.pth) and the zip of the previous pack.py (the model file and the
config's HF folders). After: ``required_grad_only`` and pack.py with its
default --inline_max_mb. checkpoint.pth also holds AdamW's state (two
tensors per trained weight). The checkpoint written after is loaded back
and its trained tensors compared. Files go to a temporary folder, deleted
at the end (the lrs3 config needs about 30 GB of disk and 14 GB of memory).

    python bench/checkpoint_size.py [--configs synthgrid lrs3] [--workdir DIR]

Prints one table row per config and a last line per config
``ratio <config>: X`` (epoch file after / before).
"""

import argparse
import gc
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict

import torch
import yaml
from espnet2.main_funcs.pack_funcs import pack
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model

from common import ROOT, Progress, stand_in_llm, table
from espnet_mtsk.tasks.avsr import AVSRTask
from espnet_mtsk.tasks.checkpoint import freeze
from espnet_mtsk.tasks.checkpoint import leave_out_of_state_dict, pretrained_keys, pretrained_sources
from espnet_mtsk.tasks.pack import pack_model
from espnet_mtsk.tasks.trainer import atomic_torch_save

SYNTHGRID_CONFIG = ROOT / "egs2/synthgrid/avsr1/conf/train_avsr_mtsk.yaml"
LRS3_CONFIG = ROOT / "conf/tuning/train_avsr_mtsk_avgpool_ms.yaml"
LLAMA_3_2_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
    rope_theta=500000.0, tie_word_embeddings=True,
)
# openai/whisper-<name>: d_model, layers (encoder and decoder), heads
WHISPER_SHAPES = {"tiny.en": (384, 4, 6), "base.en": (512, 6, 8), "small.en": (768, 12, 12),
                  "medium.en": (1024, 24, 16)}


def llama_folder(out: Path) -> Path:
    """A random Llama-3.2-1B (bfloat16, as released) with a word-level
    tokenizer of its vocabulary size, so the embedding table keeps its shape."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(LLAMA_3_2_1B["vocab_size"] - 3)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(out)
    config = LlamaConfig(**LLAMA_3_2_1B, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM._from_config(config, dtype=torch.bfloat16).save_pretrained(out)
    return out


def whisper_folder(out: Path, name: str) -> Path:
    """A random openai/whisper-``name`` (encoder and decoder, float32, as released)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    d_model, layers, heads = WHISPER_SHAPES[name]
    config = WhisperConfig(
        d_model=d_model, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
        decoder_attention_heads=heads, encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model,
        num_mel_bins=80, vocab_size=51864, max_source_positions=1500, max_target_positions=448,
    )
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(out)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(out)
    return out


def avhubert_checkpoint(out: Path, encoder_conf: Dict) -> Path:
    """A fairseq-layout AV-HuBERT checkpoint of a random encoder of ``encoder_conf``."""
    from espnet_mtsk.encoders.avhubert import AVHubertVideoEncoder

    conf = {k: v for k, v in encoder_conf.items() if k != "checkpoint"}
    torch.manual_seed(0)
    state = AVHubertVideoEncoder(**conf).state_dict()
    # fairseq's pos_conv is Sequential(conv, SamePad, GELU)
    model = {re.sub(r"^encoder\.pos_conv\.", "encoder.pos_conv.0.", k): v for k, v in state.items()}
    torch.save({"cfg": {"model": {}}, "model": model}, out)
    return out


def with_sources(name: str, work: Path, progress: Progress) -> Dict:
    """The config ``name`` with its pretrained parts made under ``work``."""
    if name == "lrs3":
        conf = yaml.safe_load(LRS3_CONFIG.read_text())
        progress("lrs3: random Llama-3.2-1B folder")
        conf["llm_conf"]["model_dir"] = str(llama_folder(work / "llama"))
        progress("lrs3: random Whisper medium.en folder")
        conf["audio_encoder_conf"]["model_dir"] = str(whisper_folder(work / "whisper", "medium.en"))
        progress("lrs3: random AV-HuBERT Large checkpoint")
        conf["video_encoder_conf"]["checkpoint"] = str(
            avhubert_checkpoint(work / "large_vox_iter5.pt", conf["video_encoder_conf"])
        )
        return conf
    conf = yaml.safe_load(SYNTHGRID_CONFIG.read_text())
    progress("synthgrid: stand-in LLM")
    conf["llm_conf"] = {**conf.get("llm_conf", {}), "model_dir": str(stand_in_llm(work / "llm"))}
    audio = conf.get("audio_encoder_conf", {})
    if conf.get("audio_encoder") == "whisper" and audio.get("model_dir"):
        size = next(s for s in WHISPER_SHAPES if audio["model_dir"].endswith(s))
        progress(f"synthgrid: random Whisper {size} folder")
        audio["model_dir"] = str(whisper_folder(work / "whisper", size))
    # Encoders without pretrained weights in the config: stage 9's files.
    args = AVSRTask.get_parser().parse_args(["--config", _write(work / "tmp.yaml", conf)])
    model = AVSRTask.build_model(args)
    has_source = {s.option.split("_conf")[0] for s in pretrained_sources(args)}
    conf["init_param"] = []
    for modality in model.encoders:
        if f"{modality}_encoder" not in has_source:
            prefixes = (f"encoders.{modality}.",) + (("frontend.", "normalize.") if modality == "audio" else ())
            state = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
            torch.save(state, work / f"{modality}.pth")
            conf["init_param"].append(str(work / f"{modality}.pth"))
    return conf


def _write(path: Path, conf: Dict) -> str:
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def _mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def _save_seconds(state, path: Path, atomic: bool) -> float:
    start = time.perf_counter()
    if atomic:
        with atomic_torch_save():
            torch.save(state, path)
    else:
        torch.save(state, path)
    return time.perf_counter() - start


def measure(name: str, work: Path, progress: Progress) -> Dict:
    """Sizes (MB) and save times (s), each as (before, after)."""
    conf = with_sources(name, work, progress)
    args = AVSRTask.get_parser().parse_args(["--config", _write(work / "train.yaml", conf)])
    config = Path(_write(work / "config.yaml", vars(args)))
    progress(f"{name}: building the model as the trainer does")
    model = AVSRTask.build_model(args).to(dtype=getattr(torch, args.train_dtype))
    freeze(model, args.freeze_param)
    for entry in args.init_param:
        load_pretrained_model(entry, model, ignore_init_mismatch=False)
    trained = [p for n, p in model.named_parameters() if p.requires_grad or ".lora_" in n]
    optim = torch.optim.AdamW(trained)
    for p in trained:
        p.grad = torch.zeros_like(p)
    optim.step()

    def checkpoint(state):
        return {"model": state, "reporter": {}, "optimizers": [optim.state_dict()], "schedulers": [None], "scaler": None}

    before, after = work / "before", work / "after"
    before.mkdir()
    after.mkdir()
    progress(f"{name}: saving with save_strategy all")
    seconds_before = _save_seconds(model.state_dict(), before / "1epoch.pth", atomic=False)
    torch.save(checkpoint(model.state_dict()), before / "checkpoint.pth")
    ckpt_before = _mb(before / "checkpoint.pth")
    (before / "checkpoint.pth").unlink()
    progress(f"{name}: saving with save_strategy required_grad_only")
    leave_out_of_state_dict(model, pretrained_keys(model, pretrained_sources(args)))
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    seconds_after = _save_seconds(model.state_dict(), after / "1epoch.pth", atomic=True)
    torch.save(checkpoint(model.state_dict()), after / "checkpoint.pth")
    del model, optim, trained
    gc.collect()

    progress(f"{name}: packing both ways")
    folders = [Path(s.path) for s in pretrained_sources(args) if s.option.endswith("model_dir")]
    pack({"asr_model_file": before / "1epoch.pth"}, {"asr_train_config": config}, before / "model.zip", folders)
    zip_before = _mb(before / "model.zip")
    (before / "model.zip").unlink()
    epoch_before = _mb(before / "1epoch.pth")
    (before / "1epoch.pth").unlink()
    pack_model(config, after / "1epoch.pth", after / "model.zip", [])

    progress(f"{name}: loading the required_grad_only file back")
    loaded, _ = AVSRTask.build_model_from_file(config, after / "1epoch.pth")
    state = loaded.state_dict()
    wrong = [k for k, v in kept.items() if not torch.equal(state[k].to(v.dtype), v)]
    if wrong:
        raise RuntimeError(f"{name}: {len(wrong)} tensors differ after loading, e.g. {wrong[:3]}")
    return dict(
        epoch=(epoch_before, _mb(after / "1epoch.pth")),
        checkpoint=(ckpt_before, _mb(after / "checkpoint.pth")),
        save_seconds=(seconds_before, seconds_after),
        zip=(zip_before, _mb(after / "model.zip")),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=("synthgrid", "lrs3"), default=["synthgrid", "lrs3"])
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    progress = Progress()
    results = {}
    for name in args.configs:
        work = Path(tempfile.mkdtemp(prefix=f"checkpoint_size_{name}_", dir=args.workdir))
        try:
            results[name] = measure(name, work, progress)
        finally:
            shutil.rmtree(work)
    rows = [
        [
            name,
            *(f"{mb:,.1f}" for mb in r["epoch"]), f"{100 * r['epoch'][1] / r['epoch'][0]:.2f} %",
            *(f"{mb:,.1f}" for mb in r["checkpoint"]),
            *(f"{s:.2f}" for s in r["save_seconds"]),
            *(f"{mb:,.1f}" for mb in r["zip"]),
        ]
        for name, r in results.items()
    ]
    print(table(rows, [
        "config", "epoch file before (MB)", "after (MB)", "after / before",
        "checkpoint.pth before (MB)", "after (MB)", "save one epoch file, before (s)", "after (s)",
        "zip before (MB)", "after (MB)",
    ]))
    for name, r in results.items():
        print(f"ratio {name}: {r['epoch'][1] / r['epoch'][0]:.4f}")


if __name__ == "__main__":
    main()
