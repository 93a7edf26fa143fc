"""Stage 9: projectors pre-trained with CTC through the LLM's embedding table."""

import math

import numpy as np
import pytest
import torch
import yaml

from conftest import SENTENCES, training_loads, model_config
from espnet_mtsk.tasks.avsr import AVSRTask
from local.projector_pretrain import EmbeddingCTCHead, greedy, get_parser, pretrain, upsample_factors
from test_cli import _data_args, _datadir


def test_coarse_rates_are_upsampled_to_their_modality_s_finest():
    keys = {"a4": ("audio", 4), "a16": ("audio", 16), "v3": ("video", 3), "v6": ("video", 6), "v5": ("video", 5)}
    assert upsample_factors(keys) == {"a4": 1, "a16": 4, "v3": 1, "v6": 2, "v5": 2}


def test_a_frame_on_an_embedding_row_reads_as_its_token():
    rows = torch.randn(5, 16)
    head = EmbeddingCTCHead(rows)
    frames = torch.stack([rows[3] * 7.0, rows[0] * 0.1])[None]  # the norm does not matter
    logp = head(frames)
    assert logp.shape == (1, 2, 6)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(1, 2))
    assert logp.argmax(-1).tolist() == [[4, 1]]
    # Repeats collapse and blanks drop.
    path = torch.nn.functional.one_hot(torch.tensor([[2, 2, 0, 2, 3, 0]]), 6).float().log()
    assert greedy(path, torch.tensor([6])) == [[2, 2, 3]]
    assert greedy(path, torch.tensor([2])) == [[2]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, llm_dir, whisper_dir):
    root = tmp_path_factory.mktemp("projectors")
    data = _datadir(root / "train", SENTENCES[:4], np.random.default_rng(0))
    conf = model_config(llm_dir, whisper_dir, mode="all", lora="ms")
    conf["model_conf"]["audio_rates"] = [2, 8]
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump(conf))
    return root, data, config


def test_pretraining_learns_scales_the_norms_and_training_loads_it(setup, llm_dir):
    root, data, config = setup
    out = root / "projectors.pth"
    triples = _data_args("--train_data", data) + _data_args("--valid_data", data)
    args = get_parser().parse_args([
        "--config", str(config), "--llm_dir", llm_dir, "--out", str(out), *triples,
        "--epochs", "12", "--batch_size", "2", "--lr", "1e-2",
    ])
    result = pretrain(args)
    assert result["train_loss"][-1] < 0.6 * result["train_loss"][0], result
    assert set(result["ter"]) == {"a2", "a8", "v1", "v2"}
    assert all(f > 0 for f in result["norm"].values())
    state = torch.load(out, weights_only=True)
    assert {k.split(".")[1] for k in state} == {"a2", "a8", "v1", "v2"}
    assert all(k.startswith("projectors.") for k in state)
    assert not (root / "projectors.pth.tmp").exists()

    model = training_loads(config, out)
    # The projections' norms are the embedding rows' (the LLM reads them as it reads its tokens).
    ids = sorted({i for s in SENTENCES[:4] for i in model.llm.tokenizer(s, add_special_tokens=False).input_ids})
    row_norm = float(model.llm.model.get_input_embeddings().weight[ids].norm(dim=-1).mean())
    hs = torch.randn(2, 40, model.encoders["audio"].output_size())
    tokens, _ = model.compressor(hs, torch.tensor([40, 40]), 2)
    with torch.no_grad():
        norm = float(model.projectors["a2"](tokens).norm(dim=-1).mean())
        fresh_model = AVSRTask.build_model(AVSRTask.get_parser().parse_args(["--config", str(config)]))
        fresh = float(fresh_model.projectors["a2"](tokens).norm(dim=-1).mean())
    assert math.isclose(norm, row_norm, rel_tol=0.15), (norm, row_norm)
    assert not math.isclose(fresh, row_norm, rel_tol=0.5), (fresh, row_norm)


def test_an_encoder_checkpoint_that_does_not_fit_is_an_error(setup, llm_dir, tmp_path):
    root, data, config = setup
    bad = tmp_path / "bad.pth"
    torch.save({"encoders.video.frontend.nothing": torch.zeros(3)}, bad)
    args = get_parser().parse_args([
        "--config", str(config), "--llm_dir", llm_dir, "--out", str(tmp_path / "p.pth"),
        *_data_args("--train_data", data), *_data_args("--valid_data", data),
        "--init_param", str(bad), "--epochs", "1",
    ])
    with pytest.raises(ValueError, match="bad.pth: does not fit the model of"):
        pretrain(args)
    assert not (tmp_path / "p.pth").exists()
