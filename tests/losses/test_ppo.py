"""PPO's critic-side pure functions: ``gae`` and the clipped ``value_loss`` (values by hand, identities,
closed-form gradients in float64, NaN/inf padding, micro-batch invariance)."""

import pytest
import torch

from gspo.losses import gae, last_token_mask, token_rewards, value_loss, whiten, whiten_moments

NAN, INF = float("nan"), float("inf")


def test_gae_by_hand_with_gamma_and_lambda_not_one():
    # γ = 0.9, λ = 0.8 (γλ = 0.72); δ_t = r_t + γ·V_{t+1} − V_t with V = 0 after the last real token.
    # row 0 (3 tokens): r = [0, 0, 1], V = [0.5, 0.4, 0.6]
    #   δ_2 = 1 − 0.6 = 0.4;  δ_1 = 0.9·0.6 − 0.4 = 0.14;  δ_0 = 0.9·0.4 − 0.5 = −0.14
    #   A_2 = 0.4;  A_1 = 0.14 + 0.72·0.4 = 0.428;  A_0 = −0.14 + 0.72·0.428 = 0.16816
    # row 1 (2 tokens, NaN / inf in the padding): r = [0.2, 1.0], V = [0.3, 0.5]
    #   δ_1 = 1 − 0.5 = 0.5;  δ_0 = 0.2 + 0.9·0.5 − 0.3 = 0.35;  A_1 = 0.5;  A_0 = 0.35 + 0.72·0.5 = 0.71
    # row 2 (1 token): r = [−1], V = [0.25]: A_0 = −1.25
    r = torch.tensor([[0.0, 0.0, 1.0], [0.2, 1.0, NAN], [-1.0, INF, NAN]], dtype=torch.float64)
    v = torch.tensor([[0.5, 0.4, 0.6], [0.3, 0.5, INF], [0.25, NAN, -INF]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]).bool()
    adv, ret = gae(r, v, mask, gamma=0.9, lam=0.8)
    expected_adv = torch.tensor([[0.16816, 0.428, 0.4], [0.71, 0.5, 0.0], [-1.25, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected_adv)
    expected_ret = torch.tensor([[0.66816, 0.828, 1.0], [1.01, 1.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(ret, expected_ret)
    torch.testing.assert_close(ret, torch.where(mask, adv + torch.where(mask, v, 0.0), 0.0))


def test_gae_skips_a_hole_inside_a_row():
    # mask [1, 0, 1]: the masked middle token neither adds a term nor ends the episode.
    # δ_2 = 1 − 0.7 = 0.3;  δ_0 = 0.9·0.7 − 0.2 = 0.43;  A_0 = 0.43 + 0.72·0.3 = 0.646
    r = torch.tensor([[0.0, 5.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.2, NAN, 0.7]], dtype=torch.float64)
    adv, ret = gae(r, v, torch.tensor([[True, False, True]]), gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, torch.tensor([[0.646, 0.0, 0.3]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0.846, 0.0, 1.0]], dtype=torch.float64))


def _right_padded(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]
    r = torch.randn(batch, length, generator=g, dtype=torch.float64)
    v = torch.randn(batch, length, generator=g, dtype=torch.float64)
    return r.masked_fill(~mask, NAN), v.masked_fill(~mask, INF), mask


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    r, v, mask = _right_padded(6, 7, seed=0)
    adv, ret = gae(r, v, mask)
    r0, v0 = torch.where(mask, r, 0.0), torch.where(mask, v, 0.0)
    reward_to_go = r0.flip(-1).cumsum(-1).flip(-1)
    torch.testing.assert_close(adv, torch.where(mask, reward_to_go - v0, 0.0))
    torch.testing.assert_close(ret, torch.where(mask, reward_to_go, 0.0))


def test_gae_general_case_against_the_definition():
    # A_t = Σ_k (γλ)^k δ_{t+k}, written as a double loop over the real tokens of each row.
    r, v, mask = _right_padded(5, 6, seed=1)
    gamma, lam = 0.95, 0.7
    adv, ret = gae(r, v, mask, gamma=gamma, lam=lam)
    expected = torch.zeros_like(adv)
    for b in range(r.shape[0]):
        n = int(mask[b].sum())
        values = [float(v[b, t]) for t in range(n)] + [0.0]
        deltas = [float(r[b, t]) + gamma * values[t + 1] - values[t] for t in range(n)]
        for t in range(n):
            expected[b, t] = sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t))
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, torch.where(mask, expected + torch.where(mask, v, 0.0), 0.0))


def test_gae_padding_never_leaks_into_values_or_gradients():
    r, v, mask = _right_padded(4, 5, seed=2)
    v = v.clone().requires_grad_(True)
    r = r.clone().requires_grad_(True)
    adv, ret = gae(r, v, mask, gamma=0.9, lam=0.9)
    assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()
    (adv.sum() + ret.sum()).backward()
    assert v.grad is not None and r.grad is not None
    assert torch.isfinite(v.grad).all() and torch.isfinite(r.grad).all()
    assert (v.grad[~mask] == 0).all() and (r.grad[~mask] == 0).all()
    empty_adv, empty_ret = gae(torch.full((2, 3), NAN), torch.full((2, 3), INF), torch.zeros(2, 3, dtype=torch.bool))
    assert torch.equal(empty_adv, torch.zeros(2, 3)) and torch.equal(empty_ret, torch.zeros(2, 3))


def _value_case():
    # clip c = 0.2. Row 0 (3 real tokens):
    #   t0: V=1.0, V_old=0.5, R=2.0: V_clip = 0.7; (V−R)² = 1.00, (V_clip−R)² = 1.69 -> clipped wins, ℓ = 0.845
    #   t1: V=1.0, V_old=0.5, R=0.0: V_clip = 0.7; (V−R)² = 1.00, (V_clip−R)² = 0.49 -> unclipped,   ℓ = 0.5
    #   t2: V=0.5, V_old=0.4, R=1.0: inside the clip range, both 0.25                  ,             ℓ = 0.125
    # Row 1 (1 real token, NaN / inf padding):
    #   t0: V=0.3, V_old=0.0, R=0.1: V_clip = 0.2; 0.04 vs 0.01 -> unclipped,          ℓ = 0.02
    v = torch.tensor([[1.0, 1.0, 0.5], [0.3, NAN, INF]], dtype=torch.float64)
    v_old = torch.tensor([[0.5, 0.5, 0.4], [0.0, INF, NAN]], dtype=torch.float64)
    ret = torch.tensor([[2.0, 0.0, 1.0], [0.1, NAN, -INF]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    return v, v_old, ret, mask


def test_value_loss_by_hand_clipped_and_unclipped_branches():
    v, v_old, ret, mask = _value_case()
    v.requires_grad_(True)
    loss, st = value_loss(v, v_old, ret, mask, clip=0.2)
    assert loss.item() == pytest.approx((0.845 + 0.5 + 0.125 + 0.02) / 4)
    assert st["value_clip_frac"].item() == pytest.approx(1 / 4)
    loss.backward()
    # dℓ/dV: t0 clipped and saturated -> 0; t1: V−R = 1; t2: V−R = −0.5; row 1: V−R = 0.2; all /4
    expected = torch.tensor([[0.0, 1.0, -0.5], [0.2, 0.0, 0.0]], dtype=torch.float64) / 4
    assert v.grad is not None
    torch.testing.assert_close(v.grad, expected)
    # a wide clip range is the plain squared error: (1 + 4 + 0.25 + 0.04) / 2 / 4
    wide, st = value_loss(v, v_old, ret, mask, clip=10.0)
    assert wide.item() == pytest.approx((1.0 + 1.0 + 0.25 + 0.04) / 2 / 4)
    assert st["value_clip_frac"].item() == 0.0
    # an explicit normalizer replaces the token count
    summed, _ = value_loss(v, v_old, ret, mask, clip=0.2, normalizer=1.0)
    assert summed.item() == pytest.approx(0.845 + 0.5 + 0.125 + 0.02)


def test_value_loss_explained_variance():
    # R = [1, 2, 3], V = [1, 2, 2]: Var[R] = 2/3, R − V = [0, 0, 1], Var = 2/9 -> 1 − (2/9)/(2/3) = 2/3
    ret = torch.tensor([[1.0, 2.0, 3.0, NAN]], dtype=torch.float64)
    v = torch.tensor([[1.0, 2.0, 2.0, INF]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0]]).bool()
    _, st = value_loss(v, v, ret, mask)
    assert st["explained_variance"].item() == pytest.approx(2 / 3)
    _, st = value_loss(ret, ret, ret, mask)  # a perfect critic
    assert st["explained_variance"].item() == pytest.approx(1.0)
    const = torch.ones(1, 4, dtype=torch.float64)
    _, st = value_loss(const * 0.5, const * 0.5, const, mask)  # Var[R] = 0: defined as 0, not NaN
    assert st["explained_variance"].item() == 0.0
    assert all(torch.isfinite(x) and not x.requires_grad for x in st.values())


def _random_value_case(batch: int, length: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    v_old = torch.randn(batch, length, generator=g, dtype=torch.float64)
    v = v_old + 0.4 * torch.randn(batch, length, generator=g, dtype=torch.float64)
    ret = torch.randn(batch, length, generator=g, dtype=torch.float64)
    v, v_old, ret = v.masked_fill(~mask, NAN), v_old.masked_fill(~mask, INF), ret.masked_fill(~mask, NAN)
    return v, v_old, ret, mask


def test_value_loss_gradient_matches_the_closed_form_float64():
    v, v_old, ret, mask = _random_value_case(8, 6, seed=3)
    v.requires_grad_(True)
    c = 0.2
    loss, st = value_loss(v, v_old, ret, mask, clip=c)
    loss.backward()
    assert 0.0 < st["value_clip_frac"].item() < 1.0  # both branches occur
    with torch.no_grad():
        v0, vo0, r0 = (torch.where(mask, x, 0.0) for x in (v, v_old, ret))
        v_clip = vo0 + (v0 - vo0).clamp(-c, c)
        clipped_wins = (v_clip - r0).square() > (v0 - r0).square()
        inside = (v0 - vo0).abs() < c
        # d/dV of 0.5·max(...): (V − R) when the unclipped term wins; (V_clip − R)·1{|V − V_old| < c} otherwise
        grad = torch.where(clipped_wins, (v_clip - r0) * inside, v0 - r0)
        expected = torch.where(mask, grad, 0.0) / mask.sum()
    assert v.grad is not None and torch.isfinite(v.grad).all()
    torch.testing.assert_close(v.grad, expected)


@pytest.mark.parametrize("micro_batches", [2, 8])
def test_value_loss_micro_batches_add_up_to_the_whole_step(micro_batches):
    v, v_old, ret, mask = _random_value_case(8, 6, seed=4)
    whole_v = v.clone().requires_grad_(True)
    whole, _ = value_loss(whole_v, v_old, ret, mask)
    whole.backward()
    tokens = mask.sum()
    parts_v = v.clone().requires_grad_(True)
    total = torch.zeros((), dtype=torch.float64)
    for rows in torch.arange(8).chunk(micro_batches):
        part, _ = value_loss(parts_v[rows], v_old[rows], ret[rows], mask[rows], normalizer=tokens)
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, whole.detach())
    torch.testing.assert_close(parts_v.grad, whole_v.grad)


def test_value_loss_nan_padding_never_leaks_into_loss_stats_or_gradients():
    v, v_old, ret, mask = _random_value_case(4, 5, seed=5)
    v.requires_grad_(True)
    loss, st = value_loss(v, v_old, ret, mask)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(x) for x in st.values())
    assert v.grad is not None and torch.isfinite(v.grad).all() and (v.grad[~mask] == 0).all()
    empty = torch.zeros(2, 3, dtype=torch.bool)
    loss, st = value_loss(torch.full((2, 3), NAN), torch.full((2, 3), INF), torch.full((2, 3), NAN), empty)
    assert loss.item() == 0.0 and all(torch.isfinite(x) for x in st.values())


# ---------------------------------------------------------------- token rewards and whitening


def test_token_rewards_put_the_reward_on_the_last_real_token_and_kl_on_every_one():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]).bool()  # row 1 has a hole
    torch.testing.assert_close(last_token_mask(mask), torch.tensor([[0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]).bool())
    rewards = torch.tensor([1.0, 0.5, NAN])  # NaN: a missing reward counts as 0
    plain = token_rewards(rewards, mask)
    torch.testing.assert_close(plain, torch.tensor([[0, 0, 1.0, 0], [0, 0, 0.5, 0], [0, 0, 0, 0]]))
    kl = torch.tensor([[0.1, 0.2, 0.3, NAN], [0.4, INF, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0]])
    shaped = token_rewards(rewards, mask, kl_BT=kl, kl_coef=0.5)
    expected = torch.tensor([[-0.05, -0.1, 0.85, 0], [-0.2, 0, 0.25, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(shaped, expected)
    assert torch.isfinite(shaped).all()


def test_whiten_over_real_tokens_by_hand_and_from_summed_moments():
    # real values 1, 2, 3, 6: mean 3, unbiased variance (4 + 1 + 0 + 9) / 3 = 14/3
    x = torch.tensor([[1.0, 2.0, NAN], [3.0, 6.0, INF]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]]).bool()
    out = whiten(x, mask, eps=0.0)
    std = (14 / 3) ** 0.5
    torch.testing.assert_close(out, torch.tensor([[-2 / std, -1 / std, 0.0], [0.0, 3 / std, 0.0]], dtype=torch.float64))
    # two "processes" each holding one row: their summed moments whiten each row exactly as the whole
    moments = whiten_moments(x[:1], mask[:1]) + whiten_moments(x[1:], mask[1:])
    torch.testing.assert_close(whiten(x[1:], mask[1:], moments=moments, eps=0.0), out[1:])
    # one real token: variance undefined, eps keeps it finite
    assert torch.isfinite(whiten(torch.tensor([[5.0]]), torch.tensor([[True]]))).all()
