import shutil

import pytest
import torch

from espnet_mtsk.llm import precision
from espnet_mtsk.llm.causal_lm import IGNORE_ID, MARKERS, HFCausalLM, load_tokenizer


@pytest.fixture(scope="module")
def llm(llm_dir):
    return HFCausalLM(llm_dir, autocast="none")


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


def _scales(llm, lens_per_scale):
    """Segments of several scales (different lengths) of one batch."""
    torch.manual_seed(1)
    return [_segments(llm, lens) for lens in lens_per_scale]


def test_length_buckets_give_the_losses_of_one_padded_pass(llm_dir):
    ys, ys_lens = torch.tensor([[5, 6, 7], [8, 9, -1]]), torch.tensor([3, 2])
    one = HFCausalLM(llm_dir, autocast="none")
    bucketed = HFCausalLM(llm_dir, autocast="none", length_buckets=3)
    per_scale = _scales(one, [(9, 8), (2, 1), (5, 4)])
    widths = []
    hook = bucketed.model.get_decoder().register_forward_hook(
        lambda _m, _i, out: widths.append(out.last_hidden_state.size(1))
    )
    got = bucketed.forward_scales(per_scale, ys, ys_lens)
    hook.remove()
    want = one.forward_scales(per_scale, ys, ys_lens)
    for (loss, acc), (ref_loss, ref_acc) in zip(got, want):
        assert torch.allclose(loss, ref_loss, atol=1e-5) and acc == ref_acc
    # Three passes, the short rows' without the long rows' padding.
    assert len(widths) == 3 and widths[0] < widths[-1]


def test_bad_length_buckets_or_autocast_is_a_clear_error(llm_dir):
    with pytest.raises(ValueError, match="length_buckets"):
        HFCausalLM(llm_dir, length_buckets=0)
    with pytest.raises(ValueError, match="autocast must be one of"):
        HFCausalLM(llm_dir, autocast="fp8")


def test_bf16_autocast_runs_the_llm_in_bf16_and_keeps_its_loss(llm_dir):
    """Measured on this stand-in: the bf16 loss is 6e-5 (relative) from the
    float32 one; on SmolLM2-135M at initialisation 6e-4 (11.067 against
    11.074). 1e-3 leaves a margin over the first."""
    ys, ys_lens = torch.tensor([[5, 6, 7], [8, 9, -1]]), torch.tensor([3, 2])
    losses, dtypes = {}, {}
    for mode in ("none", "bfloat16"):
        llm = HFCausalLM(llm_dir, autocast=mode)
        proj = llm.model.model.layers[0].self_attn.q_proj
        hook = proj.register_forward_hook(lambda _m, _i, out, mode=mode: dtypes.__setitem__(mode, out.dtype))
        (loss, _), = llm.forward_scales(_scales(llm, [(6, 4)]), ys, ys_lens)
        hook.remove()
        losses[mode] = loss
        assert loss.dtype == torch.float32
    assert dtypes == {"none": torch.float32, "bfloat16": torch.bfloat16}
    assert abs(losses["bfloat16"] - losses["none"]) < 1e-3 * losses["none"]


def test_autocast_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    cpu = torch.device("cpu")
    for avx512_bf16, amx, want in ((False, False, None), (True, False, torch.bfloat16), (False, True, torch.bfloat16)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert precision.autocast_dtype("auto", cpu) is want
        assert precision.autocast_dtype("none", cpu) is None
        assert precision.autocast_dtype("bfloat16", cpu) is torch.bfloat16
        # Weights stored in bf16 only where it is multiplied natively (emulated, it is 6x slower).
        assert precision.weights_dtype("auto") is (want or torch.float32)
        assert precision.weights_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="llm_conf.dtype must be auto, float32"):
        precision.weights_dtype("int8")


def test_beam_search_from_the_shared_prefix_cache_equals_generate_on_the_embeddings(llm):
    """``generate`` runs the prefix once per utterance; transformers' own
    beam search over the embeddings (every beam's prefix run) gives the
    same transcripts."""
    torch.manual_seed(0)
    segments = [("audio", torch.randn(3, 7, llm.hidden_size()), torch.tensor([7, 2, 5]))]
    inputs = llm.build_inputs(segments)
    inputs.pop("position_ids")
    tok = llm.tokenizer
    reference = llm.model.generate(
        **inputs, num_beams=3, max_new_tokens=6, do_sample=False,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        return_dict_in_generate=True, output_scores=True,
    )
    want = [t.strip() for t in tok.batch_decode(reference.sequences, skip_special_tokens=True)]
    texts, scores = llm.generate(segments, beam_size=3, max_new_tokens=6)
    assert texts == want
    # transformers' beam score: the summed log-probabilities over the length.
    torch.testing.assert_close(scores, reference.sequences_scores, atol=1e-4, rtol=1e-4)
    assert any(want)


@pytest.fixture(scope="module")
def untied_llm_dir(llm_dir, tmp_path_factory):
    """The stand-in with an LM head of its own."""
    from transformers import AutoModelForCausalLM

    out = shutil.copytree(llm_dir, tmp_path_factory.mktemp("untied") / "llm")
    model = AutoModelForCausalLM.from_pretrained(llm_dir)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach() * 2)
    model.save_pretrained(str(out))
    return str(out)


@pytest.mark.parametrize("tied", [True, False])
def test_added_token_rows_do_not_depend_on_the_resize_initialisation(tied, llm_dir, untied_llm_dir, monkeypatch):
    """The rows the marker and pad tokens add to the LLM's table (and to its
    head) are frozen and left out of checkpoints, so decoding rebuilds them:
    another transformers initialisation, or another random state, must give
    the same rows and logits."""
    from transformers import PreTrainedModel

    folder = llm_dir if tied else untied_llm_dir
    segments = _segments(HFCausalLM(folder, autocast="none"))

    def outputs():
        llm = HFCausalLM(folder, autocast="none").eval()
        with torch.no_grad():
            inputs = llm.build_inputs(segments)
            logits = llm.model(**inputs).logits
        head = llm.model.get_output_embeddings().weight
        assert (head is llm.model.get_input_embeddings().weight) == tied
        return logits, llm.marker_embed.weight.detach(), head.detach()

    torch.manual_seed(0)
    want = outputs()
    resize = PreTrainedModel.resize_token_embeddings

    def other_initialisation(self, *args, **kwargs):
        before = self.get_input_embeddings().num_embeddings
        out = resize(self, *args, **kwargs)
        with torch.no_grad():
            for table in {self.get_input_embeddings().weight, self.get_output_embeddings().weight}:
                table[before:] = torch.randn_like(table[before:])
        return out

    monkeypatch.setattr(PreTrainedModel, "resize_token_embeddings", other_initialisation)
    torch.manual_seed(1)
    for got, expected in zip(outputs(), want):
        assert torch.equal(got, expected)
