"""Per-turn advantages (gspo.losses.turns): values by hand, the per-trajectory case, spreading to tokens."""

import math

import torch

from gspo.losses import group_advantages
from gspo.losses.turns import spread_turn_advantages, turn_advantages


def test_turn_advantages_are_reward_to_go_against_the_group_baseline():
    turn_rewards_BK = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.0, 0.0]])
    final_B = torch.tensor([1.0, 0.0])
    returns_B = final_B + turn_rewards_BK.sum(-1)  # 4.0, 0.5
    adv_B = group_advantages(returns_B, 2)
    adv_BK = turn_advantages(adv_B, returns_B, turn_rewards_BK, 2)
    mean, std = 2.25, 3.5 / math.sqrt(2)
    togo_BK = torch.tensor([[4.0, 3.0, 3.0], [0.5, 0.0, 0.0]])  # R − Σ_{k'<k} r_k'
    assert torch.allclose(adv_BK, (togo_BK - mean) / std, atol=1e-6)
    assert torch.allclose(adv_BK[:, 0], adv_B)  # the first turn's advantage is the episode's


def test_without_turn_rewards_every_turn_gets_the_episode_advantage():
    returns_B = torch.tensor([1.0, 0.0, 0.0, 3.0])
    adv_B = group_advantages(returns_B, 2)
    adv_BK = turn_advantages(adv_B, returns_B, torch.zeros(4, 3), 2)
    assert torch.equal(adv_BK, adv_B[:, None].expand(4, 3))


def test_constant_group_keeps_its_turn_differences_unscaled_and_none_scale():
    turn_rewards_BK = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    returns_B = turn_rewards_BK.sum(-1)  # equal returns: std 0 -> scale 1
    adv_BK = turn_advantages(group_advantages(returns_B, 2), returns_B, turn_rewards_BK, 2)
    assert torch.equal(adv_BK, torch.tensor([[0.0, -1.0], [0.0, 0.0]]))
    adv_none = turn_advantages(torch.zeros(2), torch.tensor([5.0, 1.0]), turn_rewards_BK * 2, 2, scale="none")
    assert torch.equal(adv_none, torch.tensor([[0.0, -2.0], [0.0, 0.0]]))


def test_spread_gives_each_token_its_turn_and_environment_tokens_zero():
    adv_BK = torch.tensor([[1.0, 2.0, 3.0]])
    turn_BT = torch.tensor([[0, 0, -1, -1, 1, -1, 2, 2, -1]])
    assert spread_turn_advantages(adv_BK, turn_BT).tolist() == [[1, 1, 0, 0, 2, 0, 3, 3, 0]]
