"""The GSPO family's other losses: CISPO, GMPO and SAPO, as pure tensor functions of the loss registry.

Each takes the masked micro-batch (:class:`~gspo.losses.policy.LossInputs`) and its hyper-parameters
by name, and returns a :class:`~gspo.losses.policy.LevelOutput`; ``policy_loss`` aggregates (the
aggregation and the defaults are the algorithm table's, :mod:`gspo.algorithms`). Notation: l = log
π_θ(y_i,t), l_old = log π_old(y_i,t), x = clamp(l - l_old, ±max_log_ratio), r = e^x, Â the advantage.

  "cispo"  CISPO (MiniMax-M1, Chen et al. 2025, arXiv 2506.13585, eq. 4)
      J_i,t = sg[ clip(r, 1-ε_low, 1+ε_high) ] · Â_i,t · l
      No token is dropped: the importance weight is truncated and detached, the gradient flows
      through log π. Where no truncation acts the gradient equals GRPO's (r·Â·∇l).
      Logged: clip_frac_low / clip_frac_high = tokens whose weight was truncated below / above.

  "gmpo"  GMPO (Zhao et al. 2025, arXiv 2507.20673, eq. 5)
      x̃_t   = sgn(Â)·min(sgn(Â)·x_t, sgn(Â)·clamp(x_t, -ε_low, ε_high))       clip per token, in log space
      J_i   = exp( (1/|y_i|) Σ_t x̃_t ) · Â_i                                    geometric mean of the ratios
      With every token inside the clip, J_i = exp(mean_t x_t)·Â_i (GSPO's unclipped objective).
      Gradient: (1/|y_i|)·exp(mean x̃)·Â_i·∇l_t on unclipped tokens, 0 on clipped ones.
      Logged: token clip fractions, and ``gmpo/seq_ratio_mean`` (the clipped geometric means).

  "sapo"  SAPO (Gao et al. 2025, arXiv 2511.20347, eq. 7-9)
      f(r) = σ(τ·(r - 1))·4/τ,  τ = τ_pos if Â > 0 else τ_neg
      J_i,t = f(r_i,t)·Â_i,t;   ∂J/∂l = 4·σ(1-σ)·r·Â  (the soft gate g = 4σ(1-σ) is 1 at r = 1)
      No hard clip: off-policy tokens are smoothly down-weighted. Logged: ``sapo/gate_mean`` (mean g
      over tokens) and clip_frac_low / clip_frac_high = tokens whose gate fell below 1/2 with r < 1 / r > 1.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

from gspo.losses.policy import LevelOutput, LossInputs, register_loss

Tensor: TypeAlias = torch.Tensor


def _masked_mean(x_BT: Tensor, mask_BT: Tensor) -> Tensor:
    return torch.where(mask_BT, x_BT, 0.0).sum() / mask_BT.sum().clamp(min=1)


def _log_ratio(x: LossInputs, max_log_ratio: float) -> Tensor:
    return (x.logp_BT - x.old_logp_BT).clamp(-max_log_ratio, max_log_ratio)


@register_loss("cispo")
def cispo_loss(x: LossInputs, *, clip_low: float, clip_high: float, max_log_ratio: float) -> LevelOutput:
    """CISPO: sg[clip(r, 1-ε_low, 1+ε_high)]·Â·log π_θ per token (MiniMax-M1, eq. 4)."""
    mask_BT = x.mask_BT
    r_BT = torch.exp(_log_ratio(x, max_log_ratio))
    weight_BT = r_BT.clamp(1.0 - clip_low, 1.0 + clip_high).detach()
    return LevelOutput(
        objective_BT=torch.where(mask_BT, weight_BT * x.adv_BT * x.logp_BT, 0.0),
        ratio_B_or_BT=r_BT.detach(),
        clipped_low_BT=(r_BT < 1.0 - clip_low) & mask_BT,
        clipped_high_BT=(r_BT > 1.0 + clip_high) & mask_BT,
        sequence_level=False,
    )


@register_loss("gmpo")
def gmpo_loss(x: LossInputs, *, clip_low: float, clip_high: float, max_log_ratio: float) -> LevelOutput:
    """GMPO: exp(mean_t of the token log-ratios clipped in log space)·Â (Zhao et al. 2025, eq. 5)."""
    mask_BT = x.mask_BT
    log_r_BT = _log_ratio(x, max_log_ratio)
    adv_B = x.adv_BT.sum(-1) / x.lengths_B  # sequence advantages (constant along each row)
    sign_B1 = torch.sign(adv_B).unsqueeze(-1)
    clamped_BT = log_r_BT.clamp(-clip_low, clip_high)
    kept_BT = sign_B1 * torch.minimum(sign_B1 * log_r_BT, sign_B1 * clamped_BT)
    log_s_B = torch.where(mask_BT, kept_BT, 0.0).sum(-1) / x.lengths_B
    s_B = torch.exp(log_s_B)
    obj_B = s_B * adv_B
    return LevelOutput(
        objective_BT=torch.where(mask_BT, obj_B.unsqueeze(-1).expand_as(mask_BT), 0.0),
        ratio_B_or_BT=torch.exp(log_r_BT).detach(),
        clipped_low_BT=(log_r_BT < -clip_low) & (sign_B1 < 0) & mask_BT,
        clipped_high_BT=(log_r_BT > clip_high) & (sign_B1 > 0) & mask_BT,
        sequence_level=False,
        extra={"gmpo/seq_ratio_mean": s_B.detach().mean()},
    )


@register_loss("sapo")
def sapo_loss(x: LossInputs, *, tau_pos: float, tau_neg: float, max_log_ratio: float) -> LevelOutput:
    """SAPO: the soft gate σ(τ(r-1))·4/τ in place of the hard clip (Gao et al. 2025, eq. 7-9)."""
    mask_BT = x.mask_BT
    r_BT = torch.exp(_log_ratio(x, max_log_ratio))
    tau_BT = torch.where(x.adv_BT > 0, tau_pos, tau_neg)
    sig_BT = torch.sigmoid(tau_BT * (r_BT - 1.0))
    gate_BT = (4.0 * sig_BT * (1.0 - sig_BT)).detach()
    soft_BT = (gate_BT < 0.5) & mask_BT
    return LevelOutput(
        objective_BT=torch.where(mask_BT, sig_BT * (4.0 / tau_BT) * x.adv_BT, 0.0),
        ratio_B_or_BT=r_BT.detach(),
        clipped_low_BT=soft_BT & (r_BT < 1.0),
        clipped_high_BT=soft_BT & (r_BT > 1.0),
        sequence_level=False,
        extra={"sapo/gate_mean": _masked_mean(gate_BT, mask_BT)},
    )
