"""DPO's sigmoid loss (pure function): value by hand, closed-form gradient, extreme margins, stats."""

import math

import pytest
import torch

from gspo.losses import dpo_loss


def test_dpo_loss_by_hand():
    # β = 0.1; pair 0: (c − c_ref) = 1, (r − r_ref) = −1 -> z = 0.1·2 = 0.2
    #          pair 1: (c − c_ref) = 0, (r − r_ref) = 1  -> z = 0.1·(−1) = −0.1
    c = torch.tensor([-10.0, -5.0], dtype=torch.float64)
    r = torch.tensor([-12.0, -4.0], dtype=torch.float64)
    c_ref = torch.tensor([-11.0, -5.0], dtype=torch.float64)
    r_ref = torch.tensor([-11.0, -5.0], dtype=torch.float64)
    loss, st = dpo_loss(c, r, c_ref, r_ref, beta=0.1)
    # −log σ(z) = log(1 + e^−z)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-0.2)) + math.log1p(math.exp(0.1))) / 2)
    assert st["reward_margin"].item() == pytest.approx((0.2 - 0.1) / 2)
    assert st["reward_accuracy"].item() == 0.5
    assert st["chosen_reward"].item() == pytest.approx((0.1 + 0.0) / 2)
    assert st["rejected_reward"].item() == pytest.approx((-0.1 + 0.1) / 2)
    # equal policy and reference: z = 0, loss = log 2, no pair preferred
    loss, st = dpo_loss(c, r, c, r)
    assert loss.item() == pytest.approx(math.log(2))
    assert st["reward_margin"].item() == 0.0 and st["reward_accuracy"].item() == 0.0


def test_dpo_loss_gradient_matches_the_closed_form_float64():
    g = torch.Generator().manual_seed(0)
    c, r, c_ref, r_ref = (-20 * torch.rand(6, generator=g, dtype=torch.float64) for _ in range(4))
    c.requires_grad_(True)
    r.requires_grad_(True)
    beta = 0.3
    loss, _ = dpo_loss(c, r, c_ref, r_ref, beta=beta)
    loss.backward()
    z = beta * ((c.detach() - c_ref) - (r.detach() - r_ref))
    # ∂/∂c = −β·σ(−z)/B, ∂/∂r = +β·σ(−z)/B
    torch.testing.assert_close(c.grad, -beta * torch.sigmoid(-z) / 6)
    torch.testing.assert_close(r.grad, beta * torch.sigmoid(-z) / 6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dpo_loss_finite_at_extreme_margins(dtype):
    # β = 1, margins z = +1e4 and −1e4: loss terms 0 and 1e4; gradients 0 and −1 (/B) on chosen
    c = torch.tensor([1e4, -1e4], dtype=dtype, requires_grad=True)
    r = torch.zeros(2, dtype=dtype, requires_grad=True)
    zeros = torch.zeros(2, dtype=dtype)
    loss, st = dpo_loss(c, r, zeros, zeros, beta=1.0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(1e4 / 2)
    assert c.grad is not None and r.grad is not None
    torch.testing.assert_close(c.grad, torch.tensor([0.0, -0.5], dtype=dtype))
    torch.testing.assert_close(r.grad, torch.tensor([0.0, 0.5], dtype=dtype))
    assert st["reward_accuracy"].item() == 0.5 and st["reward_margin"].item() == 0.0
    assert all(torch.isfinite(x) and not x.requires_grad for x in st.values())


def test_dpo_loss_reward_accuracy_counts_pairs_preferring_chosen():
    c = torch.tensor([1.0, 2.0, -1.0, 0.5])
    r = torch.tensor([0.0, 0.0, 0.0, 0.5])
    zeros = torch.zeros(4)
    _, st = dpo_loss(c, r, zeros, zeros, beta=0.5)
    assert st["reward_accuracy"].item() == pytest.approx(2 / 4)  # ties (pair 3) do not count
    assert st["reward_margin"].item() == pytest.approx(0.5 * (1.0 + 2.0 - 1.0 + 0.0) / 4)
