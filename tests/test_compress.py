import pytest
import torch

from espnet_mtsk.compress import AvgPoolCompressor, StackCompressor


def _batch():
    xs = torch.arange(2 * 7 * 3, dtype=torch.float).reshape(2, 7, 3)
    lens = torch.tensor([7, 5])
    xs[1, 5:] = 1e6  # padding must never leak into a token
    return xs, lens


@pytest.mark.parametrize("rate, expected", [(2, [4, 3]), (3, [3, 2]), (4, [2, 2])])
def test_avgpool_lengths_round_up(rate, expected):
    xs, lens = _batch()
    out, olens = AvgPoolCompressor()(xs, lens, rate)
    assert olens.tolist() == expected
    assert out.shape == (2, -(-7 // rate), 3)


def test_avgpool_means_only_real_frames():
    xs, lens = _batch()
    out, _ = AvgPoolCompressor()(xs, lens, 2)
    # utterance 1 has 5 real frames: groups [0,1], [2,3], [4] (alone)
    assert torch.allclose(out[1, 0], xs[1, :2].mean(0))
    assert torch.allclose(out[1, 2], xs[1, 4])
    assert torch.allclose(out[0, 3], xs[0, 6])


@pytest.mark.parametrize("rate, expected", [(2, [3, 2]), (3, [2, 1]), (4, [1, 1]), (6, [1, 1])])
def test_stack_lengths_drop_incomplete_group(rate, expected):
    xs, lens = _batch()
    out, olens = StackCompressor()(xs, lens, rate)
    assert olens.tolist() == expected
    assert out.shape == (2, max(7 // rate, 1), 3 * rate)
    assert StackCompressor().output_size(3, rate) == 3 * rate


def test_stack_concatenates_consecutive_frames():
    xs, lens = _batch()
    out, _ = StackCompressor()(xs, lens, 2)
    assert torch.equal(out[0, 1], torch.cat([xs[0, 2], xs[0, 3]]))


def test_stack_shorter_than_one_group_keeps_zero_padded_token():
    xs, _ = _batch()
    out, olens = StackCompressor()(xs, torch.tensor([7, 2]), 6)
    assert olens.tolist() == [1, 1]
    assert torch.equal(out[1, 0, :6], xs[1, :2].flatten())
    assert torch.all(out[1, 0, 6:] == 0)


def test_rate_one_is_identity():
    xs, lens = _batch()
    for comp in (AvgPoolCompressor(), StackCompressor()):
        out, olens = comp(xs, lens, 1)
        assert torch.equal(out, xs) and torch.equal(olens, lens)
