"""Group advantages against hand-computed numbers."""

import math

import pytest
import torch

from gspo.losses import group_advantages


def test_group_scale_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(rewards, 4)
    # group 1: mean 0.5, sample std sqrt((4 · 0.25)/3) = sqrt(1/3) -> ±0.5·sqrt(3)
    a = 0.5 * math.sqrt(3)
    torch.testing.assert_close(adv, torch.tensor([a, -a, -a, a, 0, 0, 0, 0.0]))


def test_constant_group_is_zero_never_nan():
    adv = group_advantages(torch.tensor([5.0, 5.0, 5.0]), 3)
    assert torch.equal(adv, torch.zeros(3))
    adv = group_advantages(torch.tensor([1.0, 2.0]), 1)  # group of one: no signal
    assert torch.equal(adv, torch.zeros(2))


def test_batch_and_none_scales_by_hand():
    rewards = torch.tensor([1.0, 0.0, 3.0, 3.0])
    centred = torch.tensor([0.5, -0.5, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(rewards, 2, scale="none"), centred)
    batch_std = torch.tensor([1.0, 0.0, 3.0, 3.0]).std()
    torch.testing.assert_close(group_advantages(rewards, 2, scale="batch"), centred / batch_std)


def test_missing_rewards_are_left_out():
    rewards = torch.tensor([1.0, float("nan"), 0.0, 1.0])
    adv = group_advantages(rewards, 4)
    # mean over {1, 0, 1} = 2/3, sample std sqrt((1/9 + 4/9 + 1/9)/2) = sqrt(1/3)
    s = math.sqrt(1 / 3)
    torch.testing.assert_close(adv, torch.tensor([(1 / 3) / s, 0.0, (-2 / 3) / s, (1 / 3) / s]))
    assert torch.isfinite(adv).all()


def test_float64_preserved():
    assert group_advantages(torch.tensor([0.0, 1.0], dtype=torch.float64), 2).dtype == torch.float64


@pytest.mark.parametrize("kwargs, field", [(dict(scale="z"), "scale"), (dict(group_size=0), "group_size")])
def test_bad_arguments_name_the_argument(kwargs, field):
    args = dict(group_size=2) | kwargs
    with pytest.raises(ValueError, match=field):
        group_advantages(torch.zeros(4), args.pop("group_size"), **args)


def test_batch_not_multiple_of_group():
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(torch.zeros(5), 2)


def test_reinforce_pp_token_weighted_batch_whitening_by_hand():
    from gspo.losses import reinforce_pp_advantages

    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    lengths = torch.tensor([1, 3, 2, 2])
    # returns per token: [1] [0 0 0] [0 0] [0 0]: 8 tokens, mean 1/8, unbiased var (1·(7/8)² + 7·(1/8)²)/7
    mean = 1 / 8
    std = math.sqrt(((7 / 8) ** 2 + 7 * (1 / 8) ** 2) / 7)
    expected = torch.tensor([(1 - mean) / std] + [-mean / std] * 3, dtype=torch.float64)
    torch.testing.assert_close(reinforce_pp_advantages(rewards, 2, lengths_B=lengths), expected)
    assert torch.equal(reinforce_pp_advantages(torch.ones(4), 2), torch.zeros(4))  # constant batch: 0, never NaN


def test_reinforce_pp_kl_in_the_reward_by_hand():
    from gspo.losses import reinforce_pp_advantages, token_rewards

    # two responses (lengths 3 and 2), outcome rewards 1 and 0, per-token KL, beta = 0.5
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    kl = torch.tensor([[0.2, -0.4, 0.6], [1.0, 0.0, float("nan")]], dtype=torch.float64)
    r = token_rewards(torch.tensor([1.0, 0.0], dtype=torch.float64), mask, kl_BT=kl, kl_coef=0.5)
    # r = [[-0.1, 0.2, 1 - 0.3], [-0.5, 0]]; returns-to-go G = [[0.8, 0.9, 0.7], [-0.5, 0]]
    G = torch.tensor([0.8, 0.9, 0.7, -0.5, 0.0], dtype=torch.float64)
    z = (G - G.mean()) / G.std()  # unbiased, over the 5 real tokens
    expected = torch.tensor([[z[0], z[1], z[2]], [z[3], z[4], 0.0]], dtype=torch.float64)
    adv = reinforce_pp_advantages(torch.tensor([1.0, 0.0]), 1, token_rewards_BT=r, mask_BT=mask)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


def test_reinforce_pp_kl_in_the_reward_with_beta_zero_is_the_outcome_form():
    from gspo.losses import reinforce_pp_advantages, token_rewards

    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([3, 5, 1, 4, 5, 2])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    rewards = torch.rand(6, generator=g, dtype=torch.float64)
    r = token_rewards(rewards, mask, kl_BT=torch.randn(6, 5, generator=g, dtype=torch.float64), kl_coef=0.0)
    adv_BT = reinforce_pp_advantages(rewards, 2, token_rewards_BT=r, mask_BT=mask)
    adv_B = reinforce_pp_advantages(rewards, 2, lengths_B=lengths)
    torch.testing.assert_close(adv_BT, torch.where(mask, adv_B[:, None], 0.0), rtol=0, atol=1e-12)


def test_reinforce_pp_token_form_over_two_processes_equals_the_whole_batch():
    from gspo.losses import reinforce_pp_advantages

    g = torch.Generator().manual_seed(2)
    mask = torch.rand(6, 4, generator=g) > 0.3
    r = torch.randn(6, 4, generator=g, dtype=torch.float64)
    whole = reinforce_pp_advantages(torch.zeros(6), 1, token_rewards_BT=r, mask_BT=mask)

    def sums_of(rows: slice) -> torch.Tensor:  # what this process would send to the all-reduce
        sent = []
        reinforce_pp_advantages(
            torch.zeros(1), 1, token_rewards_BT=r[rows], mask_BT=mask[rows], reduce_sums=lambda x: sent.append(x) or x
        )
        return sent[0]

    first, second = slice(0, 2), slice(2, 6)
    parts = [
        reinforce_pp_advantages(
            torch.zeros(1),
            1,
            token_rewards_BT=r[mine],
            mask_BT=mask[mine],
            reduce_sums=lambda s, o=other: s + sums_of(o),
        )
        for mine, other in ((first, second), (second, first))
    ]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=1e-12)


def test_rloo_missing_and_constant_groups_are_zero():
    from gspo.losses import rloo_advantages

    adv = rloo_advantages(torch.tensor([1.0, float("nan"), 0.0, 2.0, 2.0, 2.0]), 3)
    # group 1: two scored (1, 0): 2/1·(r - 0.5) -> ±1; the missing one 0; group 2 constant -> 0
    torch.testing.assert_close(adv, torch.tensor([1.0, 0.0, -1.0, 0.0, 0.0, 0.0]))
