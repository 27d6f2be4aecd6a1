"""Policy losses against hand-computed numbers and the paper's closed-form gradients (float64)."""

import math

import pytest
import torch

from gspo.losses import ALGORITHMS, LOSS_LEVELS, aggregate, kl_k3, policy_loss
from tests.losses.leak import assert_padding_does_not_leak


@pytest.fixture(autouse=True)
def _float64_default():
    """These tests run in float64 for tight tolerances; restore the default afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# A small hand-checkable case: two responses of lengths 3 and 2.
LOGP = [[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]]
OLD = [[-1.1, -1.9, -0.5], [-0.3, -0.6, 0.0]]
MASK = [[1, 1, 1], [1, 1, 0]]
ADV = [1.0, -1.0]


def _case():
    logp = torch.tensor(LOGP, dtype=torch.float64, requires_grad=True)
    return (
        logp,
        torch.tensor(OLD, dtype=torch.float64),
        torch.tensor(ADV, dtype=torch.float64),
        torch.tensor(MASK).bool(),
    )


# ---------------------------------------------------------------- hand-computed values


def test_gspo_seq_mean_value_by_hand():
    logp, old, adv, mask = _case()
    loss, stats = policy_loss(logp, old, adv, mask, level="sequence")
    # s_1 = exp((0.1 - 0.1 + 0)/3) = 1 -> objective 1·1 = 1
    # s_2 = exp((0 - 0.1)/2) = e^-0.05 < 1 - 3e-4 with Â<0 -> clipped: min(-e^-0.05, -(1-3e-4)) = -(1-3e-4)
    s2 = math.exp(-0.05)
    expected = -(1.0 + -(1 - 3e-4)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["clip_frac"].item() == pytest.approx(0.5)
    assert stats["clip_frac_low"].item() == pytest.approx(0.5)
    assert stats["clip_frac_high"].item() == 0.0
    assert stats["ratio_mean"].item() == pytest.approx((1 + s2) / 2, abs=1e-12)
    assert stats["ratio_min"].item() == pytest.approx(s2, abs=1e-12)
    assert stats["ratio_max"].item() == pytest.approx(1.0, abs=1e-12)


def test_gspo_token_mean_value_by_hand():
    logp, old, adv, mask = _case()
    loss, _ = policy_loss(logp, old, adv, mask, level="sequence", aggregation="token-mean")
    # each response's term repeated on its tokens: 3·(-1) + 2·(1 - 3e-4), over 5 tokens
    expected = (3 * -1.0 + 2 * (1 - 3e-4)) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_gspo_seq_mean_token_sum_value_by_hand():
    logp, old, adv, mask = _case()
    loss, _ = policy_loss(logp, old, adv, mask, level="sequence", aggregation="seq-mean-token-sum")
    assert loss.item() == pytest.approx((3 * -1.0 + 2 * (1 - 3e-4)) / 2, abs=1e-12)


def test_grpo_value_by_hand():
    logp, old, adv, mask = _case()
    loss, stats = policy_loss(logp, old, adv, mask, level="token")
    e = math.exp
    seq1 = (e(0.1) + e(-0.1) + 1.0) / 3  # Â=+1, all inside [0.8, 1.27]
    seq2 = (-1.0 + -e(-0.1)) / 2  # Â=-1, inside too
    assert loss.item() == pytest.approx(-(seq1 + seq2) / 2, abs=1e-12)
    assert stats["clip_frac"].item() == 0.0
    assert stats["ratio_max"].item() == pytest.approx(e(0.1), abs=1e-12)
    assert stats["ratio_min"].item() == pytest.approx(e(-0.1), abs=1e-12)
    assert stats["ratio_mean"].item() == pytest.approx((e(0.1) + 2 * e(-0.1) + 2) / 5, abs=1e-12)


def test_grpo_clipping_counts_tokens_by_hand():
    logp = torch.tensor([[0.5, 0.0], [-0.5, 0.0]], requires_grad=True)
    old = torch.zeros(2, 2)
    mask = torch.ones(2, 2).bool()
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask, level="token")
    # token (0,0): w=e^0.5 > 1.27, Â>0 -> clipped high (1.27); token (1,0): w=e^-0.5 < 0.8, Â<0 -> clipped low
    seq1 = (1.27 + 1.0) / 2
    seq2 = (-0.8 + -1.0) / 2
    assert loss.item() == pytest.approx(-(seq1 + seq2) / 2, abs=1e-12)
    assert stats["clip_frac"].item() == pytest.approx(0.5)  # 2 of 4 tokens
    assert stats["clip_frac_high"].item() == pytest.approx(0.25)
    assert stats["clip_frac_low"].item() == pytest.approx(0.25)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[1, 0].item() == 0.0


def test_kl_k3_by_hand_and_added_to_loss():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0]])
    mask = torch.ones(1, 2).bool()
    kl = kl_k3(logp, ref, mask)
    assert kl[0, 0].item() == pytest.approx(math.exp(-0.5) + 0.5 - 1, abs=1e-12)
    assert kl[0, 1].item() == 0.0
    adv = torch.tensor([0.0])
    loss, stats = policy_loss(logp, logp.detach(), adv, mask, ref_logp=ref, kl_coef=0.1)
    assert loss.item() == pytest.approx(0.1 * (math.exp(-0.5) - 0.5) / 2, abs=1e-12)
    assert stats["kl"].item() == pytest.approx((math.exp(-0.5) - 0.5) / 2, abs=1e-12)


def test_kl_is_measured_but_not_added_when_kl_coef_is_zero():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -2.0]])
    mask = torch.ones(1, 2).bool()
    adv = torch.tensor([0.7])
    with_ref, stats = policy_loss(logp, logp.detach(), adv, mask, ref_logp=ref, kl_coef=0.0)
    without, plain_stats = policy_loss(logp, logp.detach(), adv, mask)
    assert with_ref.item() == without.item()
    assert stats["kl"].item() == pytest.approx((math.exp(-0.5) - 0.5) / 2, abs=1e-12)
    assert "kl" not in plain_stats


# ---------------------------------------------------------------- closed-form gradients


def _random_case(seed, B=6, T=7, spread=0.02):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(B, T, generator=g) * 3
    logp = (old + spread * torch.randn(B, T, generator=g)).requires_grad_(True)
    adv = torch.randn(B, generator=g)
    adv[0], adv[1] = abs(adv[0]) + 0.1, -abs(adv[1]) - 0.1  # both signs present
    return logp, old, adv, mask, lengths


@pytest.mark.parametrize("seed", range(5))
def test_gspo_gradient_matches_eq10(seed):
    logp, old, adv, mask, lengths = _random_case(seed)
    clip_low, clip_high = 0.004, 0.005
    with torch.no_grad():  # response 0: Â>0 and s = e^0.05 -> clipped high; response 1: s = 1 -> unclipped
        logp[0] = old[0] + 0.05
        logp[1] = old[1]
    loss, _ = policy_loss(logp, old, adv, mask, level="sequence", clip_low=clip_low, clip_high=clip_high)
    loss.backward()
    s = torch.exp(((logp.detach() - old) * mask).sum(-1) / lengths)
    clipped = ((s < 1 - clip_low) & (adv < 0)) | ((s > 1 + clip_high) & (adv > 0))
    assert clipped.any() and (~clipped).any(), "test case must mix clipped and unclipped responses"
    B = logp.shape[0]
    # eq. 10: ∇J = (1/G) Σ_i s_i Â_i (1/|y_i|) Σ_t ∇log π; the loss is -J; clipped responses contribute 0.
    coef = torch.where(clipped, 0.0, s * adv / lengths) / B
    expected = -coef[:, None] * mask
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_gspo_token_equals_gspo_with_sequence_advantages(seed):
    logp, old, adv, mask, _ = _random_case(seed)
    kw = dict(clip_low=0.004, clip_high=0.005)
    logp2 = logp.detach().clone().requires_grad_(True)
    logp3 = logp.detach().clone().requires_grad_(True)
    loss_seq, st_seq = policy_loss(logp, old, adv, mask, level="sequence", **kw)
    loss_tok, st_tok = policy_loss(logp2, old, adv, mask, level="sequence_token", **kw)
    adv_BT = adv[:, None].expand_as(logp).clone()
    loss_tok2, _ = policy_loss(logp3, old, adv_BT, mask, level="sequence_token", **kw)
    torch.testing.assert_close(loss_tok, loss_seq, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(loss_tok2, loss_seq, rtol=1e-13, atol=1e-15)
    for key in ("clip_frac", "clip_frac_low", "clip_frac_high", "ratio_mean", "ratio_min", "ratio_max"):
        torch.testing.assert_close(st_tok[key], st_seq[key])
    (loss_seq + loss_tok + loss_tok2).backward()
    torch.testing.assert_close(logp2.grad, logp.grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(logp3.grad, logp.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_gspo_token_per_token_advantages_match_eq17(seed):
    logp, old, _, mask, lengths = _random_case(seed)
    g = torch.Generator().manual_seed(100 + seed)
    adv_BT = torch.randn(logp.shape, generator=g)
    clip_low, clip_high = 0.004, 0.005
    loss, _ = policy_loss(logp, old, adv_BT, mask, level="sequence_token", clip_low=clip_low, clip_high=clip_high)
    loss.backward()
    s = torch.exp(((logp.detach() - old) * mask).sum(-1) / lengths)[:, None].expand_as(adv_BT)
    clipped = ((s < 1 - clip_low) & (adv_BT < 0)) | ((s > 1 + clip_high) & (adv_BT > 0))
    B = logp.shape[0]
    # eq. 17: ∇J = (1/G) Σ_i (1/|y_i|) Σ_t s_i Â_i,t ∇log π(y_i,t), clipped tokens contribute 0.
    expected = -torch.where(clipped | ~mask, 0.0, s * adv_BT / lengths[:, None]) / B
    torch.testing.assert_close(logp.grad, expected, rtol=1e-12, atol=1e-14)
    # ... and it differs from GSPO with the per-sequence mean advantage.
    logp_seq = logp.detach().clone().requires_grad_(True)
    adv_mean = (adv_BT * mask).sum(-1) / lengths
    loss_seq, _ = policy_loss(logp_seq, old, adv_mean, mask, level="sequence", clip_low=clip_low, clip_high=clip_high)
    loss_seq.backward()
    assert not torch.allclose(logp_seq.grad, logp.grad)


@pytest.mark.parametrize("seed", range(3))
def test_on_policy_gspo_gradient_equals_seq_mean_grpo(seed):
    logp, _, adv, mask, lengths = _random_case(seed)
    logp2 = logp.detach().clone().requires_grad_(True)
    loss_gspo, st = policy_loss(logp, logp.detach(), adv, mask, level="sequence")
    loss_grpo, _ = policy_loss(logp2, logp2.detach(), adv, mask, level="token")
    loss_gspo.backward()
    loss_grpo.backward()
    torch.testing.assert_close(logp.grad, logp2.grad, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(logp.grad, -(adv / lengths)[:, None] * mask / logp.shape[0], rtol=1e-13, atol=1e-15)
    assert st["clip_frac"].item() == 0.0 and st["ratio_mean"].item() == 1.0


# ---------------------------------------------------------------- aggregation and micro-batching


@pytest.mark.parametrize("level", sorted(LOSS_LEVELS))
@pytest.mark.parametrize("aggregation", ["seq-mean", "token-mean", "seq-mean-token-sum"])
def test_microbatch_split_invariance_with_global_normalizer(level, aggregation):
    logp, old, adv, mask, _ = _random_case(7, B=8, T=5, spread=0.3)
    full_logp = logp.detach().clone().requires_grad_(True)
    loss_full, _ = policy_loss(
        full_logp, old, adv, mask, level=level, aggregation=aggregation, clip_low=0.1, clip_high=0.1
    )
    loss_full.backward()
    normalizer = mask.sum() if aggregation == "token-mean" else logp.shape[0]
    total = 0.0
    for idx in (slice(0, 1), slice(1, 4), slice(4, 8)):
        part, _ = policy_loss(
            logp[idx],
            old[idx],
            adv[idx],
            mask[idx],
            level=level,
            aggregation=aggregation,
            normalizer=normalizer,
            clip_low=0.1,
            clip_high=0.1,
        )
        part.backward()
        total = total + part.detach()
    torch.testing.assert_close(total, loss_full.detach(), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(logp.grad, full_logp.grad, rtol=1e-12, atol=1e-15)


def test_token_mean_weights_long_responses_more_than_seq_mean():
    logp = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    adv = torch.tensor([1.0, 1.0])
    (seq_loss, _), (tok_loss, _) = (
        policy_loss(logp, logp.detach(), adv, mask, aggregation=a) for a in ("seq-mean", "token-mean")
    )
    g_seq = torch.autograd.grad(seq_loss, logp)[0]
    g_tok = torch.autograd.grad(tok_loss, logp)[0]
    # seq-mean: each response weighs 1/2 in total; token-mean: the long one weighs 4/5.
    assert g_seq[0].sum().item() == pytest.approx(g_seq[1].sum().item())
    assert g_tok[1].sum().item() == pytest.approx(4 * g_tok[0].sum().item())


# ---------------------------------------------------------------- numerical safety


@pytest.mark.parametrize("level", sorted(LOSS_LEVELS))
def test_nan_and_inf_in_padding_do_not_leak(level):
    logp, old, adv, mask, _ = _random_case(3)
    assert_padding_does_not_leak(logp, old, adv, mask, level=level, old_fill=float("inf"))


@pytest.mark.parametrize("level", sorted(LOSS_LEVELS))
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_extreme_log_ratio_gives_finite_loss_and_grad(level, sign):
    logp = torch.full((2, 3), 0.0, requires_grad=True)
    old = torch.full((2, 3), -sign * 1000.0)
    mask = torch.ones(2, 3).bool()
    adv = torch.tensor([1.0, -1.0])
    loss, stats = policy_loss(logp, old, adv, mask, level=level)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    assert torch.isfinite(stats["ratio_max"])


def test_float32_inputs_work():
    logp = torch.randn(3, 4, dtype=torch.float32, requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), torch.ones(3, dtype=torch.float32), torch.ones(3, 4).bool())
    assert loss.dtype == torch.float32


# ---------------------------------------------------------------- validation and registry


def test_unknown_level_lists_valid_ones():
    logp, old, adv, mask = _case()
    with pytest.raises(ValueError, match=r"level.*'sequence'.*'sequence_token'.*'token'"):
        policy_loss(logp, old, adv, mask, level="bogus")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(aggregation="mean"), "aggregation"),
        (dict(clip_low=1.5), "clip_low"),
        (dict(clip_low=-0.1), "clip_low"),
        (dict(clip_high=-1.0), "clip_high"),
        (dict(kl_coef=-1.0), "kl_coef"),
        (dict(kl_coef=0.1), "ref_logp"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, field):
    logp, old, adv, mask = _case()
    with pytest.raises(ValueError, match=field):
        policy_loss(logp, old, adv, mask, **kwargs)


def test_shape_errors_name_the_argument():
    logp, old, adv, mask = _case()
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logp, old, torch.ones(5), mask)
    with pytest.raises(ValueError, match="logp, old_logp, mask"):
        policy_loss(logp, old[:, :2], adv, mask)
    with pytest.raises(ValueError, match="sequence_token"):
        policy_loss(logp, old, torch.randn(2, 3), mask, level="sequence")
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(torch.zeros(1, 1), torch.ones(1, 1).bool(), torch.ones(1), "nope", None)


def test_algorithms_carry_the_papers_defaults():
    table = {n: (a.loss, a.defaults.get("clip_low"), a.defaults.get("clip_high")) for n, a in ALGORITHMS.items()}
    assert table["gspo"] == ("sequence", 3e-4, 4e-4)
    assert table["gspo-token"] == ("sequence_token", 3e-4, 4e-4)
    assert table["grpo"] == ("token", 0.2, 0.27)


def test_default_clip_is_the_papers_per_level():
    # s = e^0.00035 lies inside GSPO's [1-3e-4, 1+4e-4]; e^0.00045 lies outside.
    for delta, clipped in ((0.00035, 0.0), (0.00045, 1.0)):
        logp = torch.full((1, 2), delta, requires_grad=True)
        _, st = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2).bool())
        assert st["clip_frac"].item() == clipped
    # GRPO: w = e^0.2 = 1.221 is inside [0.8, 1.27]
    logp = torch.full((1, 2), 0.2, requires_grad=True)
    _, st = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2).bool(), level="token")
    assert st["clip_frac"].item() == 0.0
