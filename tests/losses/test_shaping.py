"""DAPO's dynamic-sampling filter and soft overlong punishment; rollout-mismatch correction (pure functions)."""

import math

import pytest
import torch

from gspo.losses import informative_groups, mismatch_correction, soft_overlong_penalty


def test_informative_groups():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, float("nan"), 1.0, float("nan"), 0.0, 0.0, 0.0])
    # groups of 3: [1,1,1] const, [0,1,1] mixed, [nan,1,nan] one score only, [0,0,0] const
    assert informative_groups(r, 3).tolist() == [False, True, False, False]


def test_soft_overlong_penalty_dapo_eq13():
    lengths = torch.tensor([10, 16, 17, 18, 20, 21])
    # L_max = 20, L_cache = 4: no penalty up to 16, then (16 - |y|)/4, -1 past 20
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 20, 4), expected)
    torch.testing.assert_close(soft_overlong_penalty(lengths, 20, 4, factor=0.5), expected / 2)
    assert torch.equal(soft_overlong_penalty(lengths, 20, 0), torch.zeros(6))


def _mismatch_case():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], dtype=torch.float64)
    sampler = old - torch.tensor([[1.0, 0.0, 0.2], [-0.1, -0.1, 0.0]], dtype=torch.float64)  # log w = old - μ
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
    return old, sampler, mask


def test_truncated_importance_sampling_caps_token_weights_and_logs_raw_ratios():
    old, sampler, mask = _mismatch_case()
    weight, keep, st = mismatch_correction(old, sampler, mask, mode="tis", cap=2.0)
    e = math.exp
    expected = torch.tensor([[2.0, 1.0, e(0.2)], [e(-0.1), e(-0.1), 0.0]], dtype=torch.float64)  # e^1 -> 2
    torch.testing.assert_close(weight, expected)
    assert keep.all()
    assert st["mismatch/ratio_max"].item() == pytest.approx(e(1.0))  # raw, before the cap
    assert st["mismatch/tis_capped_frac"].item() == pytest.approx(1 / 5)
    assert st["mismatch/k1"].item() == pytest.approx(-(1.0 + 0.2 - 0.2) / 5)


def test_masked_importance_sampling_drops_sequences_outside_the_bounds():
    old, sampler, mask = _mismatch_case()
    # sequence ratios: exp(1.2/3) = 1.49 and exp(-0.2/2) = 0.905; with C = 1.4 the first leaves [1/C, C]
    weight, keep, st = mismatch_correction(old, sampler, mask, mode="mis", cap=1.4)
    assert weight is None and keep.tolist() == [False, True]
    assert st["mismatch/mis_masked_frac"].item() == 0.5
    assert st["mismatch/seq_ratio_max"].item() == pytest.approx(math.exp(0.4))
    _, keep, _ = mismatch_correction(old, sampler, mask, mode="mis", cap=2.0)
    assert keep.all()


def test_equal_logprobs_are_a_no_op_and_nan_padding_never_leaks():
    old, _, mask = _mismatch_case()
    dirty = old.clone()
    dirty[~mask] = float("nan")
    weight, keep, st = mismatch_correction(dirty, dirty.clone(), mask, mode="tis", cap=2.0)
    assert torch.equal(weight, mask.double()) and keep.all()
    assert all(math.isfinite(v.item()) for v in st.values())
    with pytest.raises(ValueError, match="mode"):
        mismatch_correction(old, old, mask, mode="bogus", cap=2.0)
