"""DAPO / Dr. GRPO / CISPO / GMPO / SAPO losses: hand-computed values, closed-form float64 gradients
(mixed clipped and unclipped tokens, both advantage signs) and the identities of issue 17."""

import math

import pytest
import torch

from gspo.algorithms import ALGORITHMS
from gspo.losses import group_advantages, policy_loss, rloo_advantages
from tests.losses.leak import assert_padding_does_not_leak


@pytest.fixture(autouse=True)
def _float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# Two responses, lengths 3 and 2; token log-ratios x = logp - old.
X = [[0.5, -0.1, 0.0], [-0.6, 0.2, 0.0]]
MASK = [[1, 1, 1], [1, 1, 0]]
ADV = [1.0, -1.0]
OLD = [[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]]


def _case():
    old = torch.tensor(OLD)
    logp = (old + torch.tensor(X)).requires_grad_(True)
    return logp, old, torch.tensor(ADV), torch.tensor(MASK).bool()


def _random_case(seed, B=8, T=7, spread=0.5):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(B, T, generator=g) * 3
    logp = (old + spread * torch.randn(B, T, generator=g)).requires_grad_(True)
    adv = torch.randn(B, generator=g)
    adv[0], adv[1] = abs(adv[0]) + 0.1, -abs(adv[1]) - 0.1
    return logp, old, adv, mask, lengths


# ---------------------------------------------------------------- values by hand


def test_cispo_value_by_hand():
    logp, old, adv, mask = _case()
    loss, st = policy_loss(logp, old, adv, mask, level="cispo", clip_low=1.0, clip_high=0.28, aggregation="token-mean")
    e = math.exp
    w = [[min(e(0.5), 1.28), e(-0.1), 1.0], [e(-0.6), e(0.2)]]  # e^0.5 = 1.65 is truncated to 1.28
    lp = [[-0.5, -2.1, -0.5], [-0.9, -0.5]]
    tok = [w[0][i] * 1.0 * lp[0][i] for i in range(3)] + [w[1][i] * -1.0 * lp[1][i] for i in range(2)]
    assert loss.item() == pytest.approx(-sum(tok) / 5, abs=1e-12)  # token-mean over 5 tokens
    assert st["clip_frac_high"].item() == pytest.approx(1 / 5) and st["clip_frac_low"].item() == 0.0


def test_gmpo_value_by_hand():
    logp, old, adv, mask = _case()
    loss, st = policy_loss(logp, old, adv, mask, level="gmpo", clip_low=0.4, clip_high=0.4)
    # response 1, Â>0: x = 0.5 > 0.4 clipped to 0.4 (min), others kept -> exp((0.4 - 0.1 + 0)/3)
    # response 2, Â<0: x = -0.6 < -0.4 clipped to -0.4 (max), 0.2 kept -> exp((-0.4 + 0.2)/2)·(-1)
    j1, j2 = math.exp(0.3 / 3), -math.exp(-0.2 / 2)
    assert loss.item() == pytest.approx(-(j1 + j2) / 2, abs=1e-12)
    assert st["clip_frac_high"].item() == pytest.approx(1 / 5) and st["clip_frac_low"].item() == pytest.approx(1 / 5)
    assert st["gmpo/seq_ratio_mean"].item() == pytest.approx((j1 - j2) / 2, abs=1e-12)


def test_sapo_value_by_hand():
    logp, old, adv, mask = _case()
    loss, st = policy_loss(logp, old, adv, mask, level="sapo")

    def f(r, tau):
        return 4.0 / tau / (1.0 + math.exp(-tau * (r - 1.0)))

    e = math.exp
    seq1 = sum(f(e(x), 1.0) for x in X[0]) / 3
    seq2 = -sum(f(e(x), 1.05) for x in X[1][:2]) / 2
    assert loss.item() == pytest.approx(-(seq1 + seq2) / 2, abs=1e-12)  # seq-mean

    def gate(r, tau):
        s = 1.0 / (1.0 + math.exp(-tau * (r - 1.0)))
        return 4 * s * (1 - s)

    gates = [gate(e(x), 1.0) for x in X[0]] + [gate(e(x), 1.05) for x in X[1][:2]]
    assert st["sapo/gate_mean"].item() == pytest.approx(sum(gates) / 5, abs=1e-12)


def test_dr_grpo_constant_normaliser_by_hand():
    logp, old, adv, mask = _case()
    loss, _ = policy_loss(
        logp,
        old,
        adv,
        mask,
        level="token",
        clip_low=0.2,
        clip_high=0.2,
        aggregation="seq-mean-token-sum-norm",
        max_length=10,
    )
    e = math.exp
    terms = [min(e(0.5), 1.2), e(-0.1), 1.0, -max(e(-0.6), 0.8), -e(0.2)]
    assert loss.item() == pytest.approx(-sum(terms) / (2 * 10), abs=1e-12)


# ---------------------------------------------------------------- closed-form gradients


@pytest.mark.parametrize("seed", range(4))
def test_cispo_gradient_closed_form(seed):
    logp, old, adv, mask, lengths = _random_case(seed)
    loss, st = policy_loss(logp, old, adv, mask, level="cispo", clip_low=0.2, clip_high=0.28, aggregation="token-mean")
    loss.backward()
    r = torch.exp(logp.detach() - old)
    clipped = (r < 0.8) | (r > 1.28)
    assert (clipped & mask).any() and (~clipped & mask).any()
    # ∇J = sg[clip(r)]·Â·∇log π (every token, clipped or not), over the 𝑁_tok tokens
    expected = -torch.where(mask, r.clamp(0.8, 1.28) * adv[:, None], 0.0) / mask.sum()
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_gmpo_gradient_closed_form(seed):
    logp, old, adv, mask, lengths = _random_case(seed)
    loss, _ = policy_loss(logp, old, adv, mask, level="gmpo", clip_low=0.4, clip_high=0.4)
    loss.backward()
    x = logp.detach() - old
    sign = torch.sign(adv)[:, None]
    clipped = ((x > 0.4) & (sign > 0)) | ((x < -0.4) & (sign < 0))
    assert (clipped & mask).any() and (~clipped & mask).any()
    kept = torch.where(clipped, x.clamp(-0.4, 0.4), x)
    s = torch.exp(torch.where(mask, kept, 0.0).sum(-1) / lengths)
    # ∂J_i/∂l_t = s_i·Â_i/|y_i| on unclipped tokens, 0 on clipped ones; seq-mean over B
    expected = -torch.where(mask & ~clipped, (s * adv / lengths)[:, None], 0.0) / logp.shape[0]
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_sapo_gradient_closed_form(seed):
    logp, old, adv, mask, lengths = _random_case(seed, spread=1.5)
    loss, st = policy_loss(logp, old, adv, mask, level="sapo", hparams={"tau_pos": 1.0, "tau_neg": 1.05})
    loss.backward()
    r = torch.exp(logp.detach() - old)
    tau = torch.where(adv > 0, 1.0, 1.05)[:, None]
    sig = torch.sigmoid(tau * (r - 1))
    # ∂J/∂l = 4σ(1-σ)·r·Â, mean over each response, seq-mean over B
    expected = -torch.where(mask, 4 * sig * (1 - sig) * r * adv[:, None] / lengths[:, None], 0.0) / logp.shape[0]
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=1e-14)
    assert st["clip_frac"].item() > 0  # some gates fell below 1/2 at this spread


# ---------------------------------------------------------------- identities


@pytest.mark.parametrize("seed", range(3))
def test_cispo_gradient_equals_grpo_where_no_clip_is_active(seed):
    logp, old, adv, mask, _ = _random_case(seed, spread=0.05)  # every ratio inside [0.8, 1.28]
    logp2 = logp.detach().clone().requires_grad_(True)
    kw = dict(clip_low=0.2, clip_high=0.28, aggregation="token-mean")
    loss_c, st = policy_loss(logp, old, adv, mask, level="cispo", **kw)
    loss_g, _ = policy_loss(logp2, old, adv, mask, level="token", **kw)
    (loss_c + loss_g).backward()
    assert st["clip_frac"].item() == 0.0
    torch.testing.assert_close(logp.grad, logp2.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_gmpo_inside_the_clip_is_exp_mean_log_ratio_times_advantage(seed):
    logp, old, adv, mask, lengths = _random_case(seed, spread=0.05)
    loss, st = policy_loss(logp, old, adv, mask, level="gmpo", clip_low=0.4, clip_high=0.4)
    s = torch.exp(torch.where(mask, logp.detach() - old, 0.0).sum(-1) / lengths)
    assert st["clip_frac"].item() == 0.0
    torch.testing.assert_close(loss.detach(), -(s * adv).mean(), rtol=1e-13, atol=1e-15)
    # ... which is GSPO's unclipped objective
    gspo, _ = policy_loss(logp, old, adv, mask, level="sequence", clip_low=1.0, clip_high=100.0)
    torch.testing.assert_close(loss.detach(), gspo.detach(), rtol=1e-13, atol=1e-15)


def test_dr_grpo_advantages_are_grpo_times_group_std():
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 3, (24,), generator=g).to(torch.float64)
    rewards[:6] = 1.0  # one constant group
    grpo = group_advantages(rewards, 6, scale="group")
    dr = group_advantages(rewards, 6, scale=ALGORITHMS["dr-grpo"].settings["advantage_scale"])
    std = rewards.view(-1, 6).std(dim=1, keepdim=True).expand(-1, 6).reshape(-1)
    torch.testing.assert_close(dr, grpo * std, rtol=1e-12, atol=1e-14)


def test_rloo_equals_scaled_centred_rewards():
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 3.0, 3.0, 1.0, 5.0])
    G = 4
    centred = (rewards.view(-1, G) - rewards.view(-1, G).mean(1, keepdim=True)).reshape(-1)
    torch.testing.assert_close(rloo_advantages(rewards, G), G / (G - 1) * centred)
    # the leave-one-out form, for one entry: r_0 - mean(r_1..r_3)
    assert rloo_advantages(rewards, G)[0].item() == pytest.approx(1.0 - 2.0 / 3)


# ---------------------------------------------------------------- micro-batching and padding


@pytest.mark.parametrize("algorithm", ["dapo", "dr-grpo", "cispo", "gmpo", "sapo", "rloo", "reinforce++"])
def test_microbatch_invariance_1_vs_8_with_the_algorithms_aggregation(algorithm):
    entry = ALGORITHMS[algorithm]
    aggregation = entry.settings.get("aggregation", "seq-mean")
    logp, old, adv, mask, _ = _random_case(11, B=8, T=6)
    full = logp.detach().clone().requires_grad_(True)
    kw = dict(level=entry.loss, aggregation=aggregation, hparams=dict(entry.defaults), max_length=9)
    loss_full, _ = policy_loss(full, old, adv, mask, **kw)
    loss_full.backward()
    normalizer = mask.sum() if aggregation == "token-mean" else 8.0
    total = torch.zeros(())
    for i in range(8):
        part, _ = policy_loss(
            logp[i : i + 1], old[i : i + 1], adv[i : i + 1], mask[i : i + 1], normalizer=normalizer, **kw
        )
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, loss_full.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(logp.grad, full.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("level", ["cispo", "gmpo", "sapo"])
def test_masked_nan_inf_never_leak(level):  # clipping active (spread 0.5), π_old -inf at padding
    logp, old, adv, mask, _ = _random_case(3)
    assert_padding_does_not_leak(logp, old, adv, mask, level=level, old_fill=-float("inf"))


def test_each_entry_has_a_docstring_with_formula_and_reference():
    from gspo.losses import LOSS_LEVELS, PAIR_LOSSES, get_level

    for name, entry in ALGORITHMS.items():
        if "pairs" in entry.needs:  # a loss on (chosen, rejected) pairs: DPO
            assert PAIR_LOSSES.get_fn(entry.loss).__doc__, name
            continue
        assert entry.loss in LOSS_LEVELS, name
        assert get_level(entry.loss).__doc__, name
