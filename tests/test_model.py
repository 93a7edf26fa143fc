import pytest
import torch

from conftest import build, make_batch
from espnet_mtsk.llm.causal_lm import IGNORE_ID


@pytest.fixture(scope="module")
def avsr(llm_dir, whisper_dir):
    return build(llm_dir, whisper_dir, mode="avsr", lora="mss")


def test_matryoshka_loss_is_the_mean_of_per_scale_losses(avsr):
    avsr.eval()
    batch, _ = make_batch(avsr.llm.tokenizer)
    loss, stats, weight = avsr(**batch)
    assert avsr.scale_ids == ["a2_v1", "a2_v2", "a4_v1", "a4_v2"]
    one_by_one = []
    for scale_id in avsr.scale_ids:
        scale = avsr.scale(scale_id)
        encoded = avsr.encode(batch["speech"], batch["speech_lengths"], batch["video"], batch["video_lengths"])
        avsr.lora.activate(avsr.llm.model, scale_id)
        alone, _ = avsr.llm(avsr.prompt_parts(encoded, scale, {}), batch["text"], batch["text_lengths"])
        one_by_one.append(alone)
        assert torch.allclose(stats[f"loss_{scale_id}"], alone, atol=1e-5)
        assert 0 <= stats[f"acc_{scale_id}"] <= 1
    assert torch.allclose(loss, torch.stack(one_by_one).mean(), atol=1e-5)
    # The target tokens the loss averages over (ESPnet's ranks weight their losses by it).
    assert weight == (avsr.llm._labels(batch["text"], batch["text_lengths"]) != IGNORE_ID).sum()
    # force_gatherable's shapes: what ESPnet's data-parallel path concatenates.
    assert loss.shape == weight.shape == (1,) and all(v.shape == (1,) for v in stats.values())


def test_shared_adapters_run_every_scale_in_one_pass_with_the_same_losses(llm_dir, whisper_dir):
    model = build(llm_dir, whisper_dir, mode="all", lora="ms").eval()
    assert model.one_pass and len(model.scale_ids) == 8
    batch, _ = make_batch(model.llm.tokenizer)
    calls = []
    decoder = model.llm.model.get_base_model().get_decoder()
    hook = decoder.register_forward_hook(lambda *_: calls.append(1))
    loss, stats, _ = model(**batch)
    assert len(calls) == 1
    model.one_pass = False
    loop_loss, loop_stats, _ = model(**batch)
    hook.remove()
    assert len(calls) == 1 + 8
    assert torch.allclose(loss, loop_loss, atol=1e-5)
    for scale_id in model.scale_ids:
        key = f"loss_{scale_id}"
        assert torch.allclose(stats[key], loop_stats[key], atol=1e-5), scale_id


def _build_all(llm_dir, whisper_dir, **model_conf):
    """The tiny mode-all MS-LoRA model (8 scales) with ``model_conf`` overrides."""
    return build(llm_dir, whisper_dir, mode="all", lora="ms", model_conf=model_conf)


def _drawn(model, batch, steps):
    drawn = []
    for _ in range(steps):
        _, stats, _ = model(**batch)
        drawn.append([s for s in model.scale_ids if f"loss_{s}" in stats])
    return drawn


def test_scales_per_step_draws_seeded_scales_covering_all_in_a_cycle(llm_dir, whisper_dir):
    model = _build_all(llm_dir, whisper_dir, scales_per_step=3).train()
    batch, _ = make_batch(model.llm.tokenizer)
    drawn = _drawn(model, batch, 6)
    # 8 scales, 3 a step: every scale once in each cycle of 3 steps.
    assert [len(d) for d in drawn] == [3, 3, 2, 3, 3, 2]
    for cycle in (drawn[:3], drawn[3:]):
        assert sorted(s for step in cycle for s in step) == sorted(model.scale_ids)
    assert drawn[:3] != drawn[3:]  # a new permutation each cycle
    assert int(model.state_dict()["scale_draws"]) == 6  # checkpoints carry the count
    model.scale_draws.zero_()
    assert _drawn(model, batch, 6) == drawn  # the same seed, the same draws
    other = _build_all(llm_dir, whisper_dir, scales_per_step=3, scale_seed=1).train()
    assert _drawn(other, batch, 6) != drawn
    model.eval()
    assert _drawn(model, batch, 1) == [model.scale_ids]  # validation scores every scale


def test_scales_per_step_of_every_scale_is_the_matryoshka_loss(llm_dir, whisper_dir):
    losses = []
    for k in (None, 8):
        model = _build_all(llm_dir, whisper_dir, scales_per_step=k).train()
        assert "scale_draws" not in model.state_dict()
        batch, _ = make_batch(model.llm.tokenizer)
        torch.manual_seed(1)
        losses.append(model(**batch)[0])
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(ValueError, match=r"scales_per_step must be 1..8"):
        _build_all(llm_dir, whisper_dir, scales_per_step=9)


def test_unknown_scale_is_a_clear_error(avsr):
    batch, _ = make_batch(avsr.llm.tokenizer)
    with pytest.raises(ValueError, match=r"Unknown scale 'a16_v5'.*a2_v1"):
        avsr.recognize("a16_v5", batch["speech"], batch["speech_lengths"], batch["video"], batch["video_lengths"])
    with pytest.raises(ValueError, match="Unknown scale 'a2'"):
        avsr.recognize("a2", batch["speech"], batch["speech_lengths"])


def test_missing_video_is_a_clear_error(avsr):
    batch, _ = make_batch(avsr.llm.tokenizer)
    del batch["video"], batch["video_lengths"]
    with pytest.raises(ValueError, match="needs 'video'"):
        avsr(**batch)


def _tokens(frames, rate, compressor):
    return -(-frames // rate) if compressor == "avgpool" else max(frames // rate, 1)


@pytest.mark.parametrize("compressor", ["avgpool", "stack"])
def test_training_drives_loss_down_and_every_scale_decodes(llm_dir, whisper_dir, compressor):
    # A random tiny LLM cannot be steered through LoRA alone: train it whole.
    model = build(llm_dir, whisper_dir, mode="avsr", lora="none", compressor=compressor)
    batch, texts = make_batch(model.llm.tokenizer)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss = model(**batch)[0]
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses
    model.eval()
    for scale_id in model.scale_ids:
        hyps, num_tokens, scores = model.recognize(
            scale_id, batch["speech"], batch["speech_lengths"], batch["video"],
            batch["video_lengths"], beam_size=2, max_new_tokens=16,
        )
        assert hyps == texts, (scale_id, hyps)
        # Learned transcripts are near-certain: mean log-probability near 0.
        assert scores.shape == (len(texts),) and bool(((scores < 0) & (scores > -0.1)).all()), scores
        a_rate, v_rate = (r for _, r in model.scale(scale_id).rates)
        whisper_frames = [max(int(n / 16000 * 50), 25) for n in batch["speech_lengths"].tolist()]
        expected = [
            _tokens(a, a_rate, compressor) + _tokens(v, v_rate, compressor)
            for a, v in zip(whisper_frames, batch["video_lengths"].tolist())
        ]
        assert num_tokens.tolist() == expected
