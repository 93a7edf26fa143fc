"""Small stand-ins for the pretrained parts, written as local HF folders.

Nothing can be downloaded here, so tests and toy recipes build their own
Llama (with a sentencepiece tokenizer trained on their text) and Whisper
folders with ``save_pretrained``; the model then loads them through exactly
the code path that loads the real ones.
"""

import json
import tempfile
from pathlib import Path
from typing import Iterable, List

from typeguard import typechecked


def tokenizer_corpus(transcripts: List[str]) -> List[str]:
    """Transcripts plus the instruction prompts, one per transcript, as the
    LLM's training sequences hold them: a tokenizer trained on this spells
    the prompts in a few tokens, as a real LLM's tokenizer does."""
    from espnet_mtsk.llm.causal_lm import PROMPTS

    prompts = list(PROMPTS.values())
    return transcripts + [prompts[i % len(prompts)] for i in range(len(transcripts))]


@typechecked
def build_llama(
    out_dir: str,
    texts: Iterable[str],
    vocab_size: int = 320,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
) -> Path:
    """Trains a BPE sentencepiece tokenizer on ``texts`` and saves it with a
    randomly initialised ``LlamaForCausalLM`` of the given size to ``out_dir``.

    ``vocab_size`` counts the 256 byte-fallback pieces, so it must exceed 259.
    """
    import sentencepiece as spm
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("\n".join(t.strip() for t in texts) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(Path(tmp) / "sp"),
            vocab_size=vocab_size,
            model_type="bpe",
            byte_fallback=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            minloglevel=2,
        )
        spm_dir = Path(tmp) / "spm"
        spm_dir.mkdir()
        (Path(tmp) / "sp.model").rename(spm_dir / "tokenizer.model")
        (spm_dir / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "LlamaTokenizer"})
        )
        tokenizer = AutoTokenizer.from_pretrained(str(spm_dir))
    tokenizer.save_pretrained(str(out))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(str(out))
    return out


@typechecked
def build_whisper(
    out_dir: str,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_mel_bins: int = 80,
    max_source_positions: int = 1500,
    seed: int = 0,
) -> Path:
    """Saves a randomly initialised Whisper model and feature extractor."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    out = Path(out_dir)
    torch.manual_seed(seed)
    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=num_layers,
        decoder_layers=1,
        encoder_attention_heads=num_heads,
        decoder_attention_heads=num_heads,
        encoder_ffn_dim=d_model * 4,
        decoder_ffn_dim=d_model * 4,
        num_mel_bins=num_mel_bins,
        max_source_positions=max_source_positions,
        vocab_size=64,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    WhisperModel(config).save_pretrained(str(out))
    WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(str(out))
    return out
