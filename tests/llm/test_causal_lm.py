import shutil

import pytest
import torch

from espnet_mtsk.llm.causal_lm import IGNORE_ID, MARKERS, HFCausalLM, load_tokenizer


@pytest.fixture(scope="module")
def llm(llm_dir):
    return HFCausalLM(llm_dir)


def _segments(llm, lens=(3, 1)):
    dim = llm.hidden_size()
    audio = torch.randn(len(lens), max(lens), dim)
    return [("audio", audio, torch.tensor(lens))]


def test_tokenizer_gains_markers_and_pad(llm, llm_dir):
    tok = llm.tokenizer
    base = load_tokenizer(llm_dir)
    for pair in MARKERS.values():
        for token in pair:
            assert token in tok.get_vocab()
    assert tok.pad_token == "<pad>"
    assert llm.model.get_input_embeddings().num_embeddings == len(tok) == len(base)


def test_labels_cover_only_target_and_eos(llm):
    ys = torch.tensor([[5, 6, 7], [8, -1, -1]])
    ys_lens = torch.tensor([3, 1])
    inputs = llm.build_inputs(_segments(llm), ys, ys_lens)
    labels, mask = inputs["labels"], inputs["attention_mask"]
    eos = llm.tokenizer.eos_token_id
    assert labels.shape == (2, 4)
    assert labels[0].tolist() == [5, 6, 7, eos]
    assert labels[1].tolist() == [IGNORE_ID, IGNORE_ID, 8, eos]
    prompt = len(llm._prompt_ids[("audio",)])
    # BOS + <audio> + 3 tokens + </audio> + prompt + 3 target ids
    assert mask[0].sum() == 1 + 1 + 3 + 1 + prompt + 3
    # the shorter example is left-padded: no padding inside its sequence
    assert mask[1].sum() == 1 + 1 + 1 + 1 + prompt + 1
    assert mask[1, -int(mask[1].sum()) :].all() and not mask[1, : -int(mask[1].sum())].any()


def test_inputs_hold_real_tokens_in_layout_order(llm):
    segs = _segments(llm, lens=(2, 2))
    inputs = llm.build_inputs(segs)
    emb = inputs["inputs_embeds"][0]
    table = llm.model.get_input_embeddings()
    assert torch.allclose(emb[0], table.weight[llm.tokenizer.bos_token_id])
    assert torch.allclose(emb[1], llm.marker_embed.weight[llm.marker_index["<audio>"]])
    assert torch.allclose(emb[2:4], segs[0][1][0])
    assert torch.allclose(emb[4], llm.marker_embed.weight[llm.marker_index["</audio>"]])
    assert inputs["position_ids"][0, 0] == 0


def test_padding_never_changes_the_loss(llm):
    """An example's loss is the same alone and padded beside a longer one."""
    llm.eval()
    dim = llm.hidden_size()
    short, long = torch.randn(2, dim), torch.randn(6, dim)
    alone, _ = llm(
        [("audio", short[None], torch.tensor([2]))], torch.tensor([[5, 6]]), torch.tensor([2])
    )
    batch = torch.zeros(2, 6, dim)
    batch[0, :2], batch[1] = short, long
    ys = torch.tensor([[5, 6, -1, -1], [7, 8, 9, 10]])
    inputs = llm.build_inputs([("audio", batch, torch.tensor([2, 6]))], ys, torch.tensor([2, 4]))
    labels = inputs.pop("labels")
    logits = llm.model(**inputs, logits_to_keep=labels.size(1)).logits
    in_batch = torch.nn.functional.cross_entropy(
        logits[0].float(), labels[0], ignore_index=IGNORE_ID
    )
    assert torch.allclose(in_batch, alone, atol=1e-4)


def test_folder_without_tokenizer_is_a_clear_error(llm_dir, tmp_path):
    broken = tmp_path / "llm"
    shutil.copytree(llm_dir, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        HFCausalLM(str(broken))


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        HFCausalLM(str(tmp_path / "nowhere"))
