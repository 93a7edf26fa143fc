import pytest
import torch

from conftest import build, make_batch


def _adapter_grads(model):
    """{adapter name: whether any of its LoRA weights got a non-zero grad}."""
    touched = {}
    for name, p in model.llm.model.named_parameters():
        if ".lora_" not in name:
            continue
        adapter = name.split(".")[-2]
        hit = p.grad is not None and bool(p.grad.abs().sum() > 0)
        touched[adapter] = touched.get(adapter, False) or hit
    return touched


@pytest.mark.parametrize(
    "lora, expected",
    [
        ("ms", {"global": True}),
        ("ss", {"a2": True, "a4": False}),
        ("mss", {"global": True, "a2": True, "a4": False}),
    ],
)
def test_one_scale_backward_touches_only_its_adapters(llm_dir, whisper_dir, lora, expected):
    model = build(llm_dir, whisper_dir, mode="asr", lora=lora)
    batch, _ = make_batch(model.llm.tokenizer)
    encoded = model.encode(batch["speech"], batch["speech_lengths"])
    scale = model.scale("a2")
    model.lora.activate(model.llm.model, scale.id)
    loss, _ = model.llm(model.prompt_parts(encoded, scale, {}), batch["text"], batch["text_lengths"])
    loss.backward()
    assert _adapter_grads(model) == expected
    # the Matryoshka step afterwards still trains every adapter
    assert all(
        p.requires_grad for n, p in model.llm.model.named_parameters() if ".lora_" in n
    )


def test_step_leaves_frozen_weights_unchanged(llm_dir, whisper_dir):
    model = build(llm_dir, whisper_dir, mode="avsr", lora="mss")
    for encoder in model.encoders.values():
        encoder.requires_grad_(False)  # what freeze_param does in the recipe
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    batch, _ = make_batch(model.llm.tokenizer)
    model(**batch)[0].backward()
    optim.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert changed, "nothing trained"
    assert changed <= trainable
    assert not any(k.startswith("encoders.") for k in changed)
    assert not any(".base_layer." in k or "embed_tokens" in k for k in changed)
    assert any(".lora_A.global" in k for k in changed)
    assert any(k.startswith("projectors.v2.") for k in changed)
    frozen_llm = [
        p for n, p in model.llm.model.named_parameters() if ".lora_" not in n
    ]
    assert frozen_llm and not any(p.requires_grad for p in frozen_llm)


def test_only_strategies_with_one_adapter_set_share_the_llm_pass():
    from espnet_mtsk.llm.lora import MSLoRA, MSSLoRA, NoLoRA, SSLoRA

    scales = ["a2", "v2", "a2_v2"]
    assert MSLoRA().shared(scales) and NoLoRA().shared(scales)
    assert not SSLoRA().shared(scales) and not MSSLoRA().shared(scales)
    assert SSLoRA().shared(["a2"])
