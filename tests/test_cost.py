from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from espnet_mtsk.bin import cost_report
from espnet_mtsk.reporting.cost import encoder_frame_rates, prefill_flops, scale_costs
from espnet_mtsk.scales import matryoshka_scales

SHAPE = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3,
             num_attention_heads=8, num_key_value_heads=2, vocab_size=300)


def test_prefill_flops_match_torchs_count_of_a_real_llama():
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, attn_implementation="eager")).eval()
    for n in (7, 40):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, n, dtype=torch.long), logits_to_keep=1)
        # Eager attention multiplies the full n x n square; a causal prefill
        # needs half of it, which is what prefill_flops counts.
        full_square = SHAPE["num_hidden_layers"] * 2 * n * n * SHAPE["hidden_size"]
        assert counter.get_total_flops() == prefill_flops(n, SHAPE) + full_square


def test_frame_rates_follow_the_config():
    assert encoder_frame_rates({"audio_encoder": "whisper", "video_encoder": "avhubert"}) == {"audio": 50.0, "video": 25.0}
    conformer = {"audio_encoder": "conformer", "frontend": "default", "frontend_conf": {"hop_length": 160},
                 "audio_encoder_conf": {"input_layer": "conv2d6"}}
    assert encoder_frame_rates(conformer) == {"audio": 100 / 6}


def test_coarser_scales_cost_less():
    scales = matryoshka_scales("avsr", [4, 16], [2, 5])
    prompts = {("audio", "video"): 8}
    costs = {c.scale: c for c in scale_costs(scales, {"audio": 50.0, "video": 25.0}, SHAPE, 5.0, prompts)}
    assert costs["a4_v2"].tokens_per_sec == 25.0 and costs["a16_v5"].tokens_per_sec == 50 / 16 + 5
    # 5 s: 63 audio + 63 video tokens, BOS, four markers, the prompt.
    assert costs["a4_v2"].sequence == 63 + 63 + 1 + 4 + 8
    assert costs["a16_v5"].prefill_gflops < 0.4 * costs["a4_v2"].prefill_gflops


def test_cost_report_prints_every_scale(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("audio_encoder: whisper\nvideo_encoder: avhubert\n"
                      "model_conf: {mode: all, audio_rates: [4, 16], video_rates: [2, 5]}\n")
    cost_report.main(["--config", str(config), "--llm_shape", "llama-3.2-1b"])
    out = capsys.readouterr().out
    for scale in ("a4", "a16", "v2", "v5", "a4_v2", "a16_v5"):
        assert f"| {scale} |" in out


@pytest.mark.parametrize(
    "config", sorted((Path(__file__).resolve().parents[1] / "conf" / "tuning").glob("*.yaml")), ids=lambda p: p.stem
)
def test_cost_report_reads_the_paper_configs(config, capsys):
    # They leave the LLM folder null (db.sh fills it): the shape comes from
    # --llm_shape and the prompt length from a word count.
    cost_report.main(["--config", str(config), "--llm_shape", "llama-3.2-1b"])
    out = capsys.readouterr().out
    assert "word count" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "scale" not in line]
    assert rows and all(float(line.split("|")[4]) > 0 for line in rows)
