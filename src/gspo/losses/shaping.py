"""Rollout-side pure functions that the trainer's general switches use (any algorithm):

- :func:`informative_groups`: DAPO's dynamic-sampling filter (Yu et al. 2025, arXiv 2503.14476, eq. 11:
  keep a group only when 0 < #correct < G, i.e. its rewards are not all equal);
- :func:`soft_overlong_penalty`: DAPO's soft overlong punishment (eq. 13), added to the reward;
- :func:`mismatch_correction`: rollout-vs-trainer mismatch correction, truncated importance sampling
  (TIS, Yao et al. 2025 "Your efficient RL framework secretly brings you off-policy RL training") and
  masked importance sampling (MIS: sequences whose geometric-mean ratio leaves [1/C, C] are dropped),
  with the raw ratios logged before any truncation.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

Tensor: TypeAlias = torch.Tensor

MISMATCH_MODES = ("none", "tis", "mis")


def informative_groups(rewards_B: Tensor, group_size: int) -> Tensor:
    """``[B // G]`` bool: groups with at least two scored responses whose rewards are not all equal."""
    r_GN = rewards_B.view(-1, group_size)
    valid_GN = ~torch.isnan(r_GN)
    high = torch.where(valid_GN, r_GN, -torch.inf).max(dim=1).values
    low = torch.where(valid_GN, r_GN, torch.inf).min(dim=1).values
    return (valid_GN.sum(dim=1) > 1) & (high > low)


def soft_overlong_penalty(lengths_B: Tensor, max_length: int, buffer: int, factor: float = 1.0) -> Tensor:
    """DAPO eq. 13, times ``factor``: with L_max = ``max_length`` and L_cache = ``buffer``,

        R(y) = 0                                  if |y| <= L_max - L_cache
             = ((L_max - L_cache) - |y|) / L_cache if L_max - L_cache < |y| <= L_max
             = -1                                 if |y| > L_max

    ``buffer = 0`` gives all zeros.
    """
    lengths_B = lengths_B.to(torch.float32)
    if buffer <= 0:
        return torch.zeros_like(lengths_B)
    start = float(max_length - buffer)
    ramp_B = (start - lengths_B) / float(buffer)
    penalty_B = torch.where(lengths_B <= start, 0.0, torch.where(lengths_B <= max_length, ramp_B, -1.0))
    return factor * penalty_B


def mismatch_correction(
    old_logp_BT: Tensor, sampler_logp_BT: Tensor, mask_BT: Tensor, *, mode: str, cap: float, max_log_ratio: float = 20.0
) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
    """Correct for a sampler μ that is not numerically the trainer's π_old.

    Raw token ratios w_t = π_old(y_t) / μ(y_t) (trainer over sampler), sequence ratio
    ρ_i = exp((1/|y_i|) Σ_t log w_t) (a geometric mean, never exp of a sum), C = ``cap``:

    - ``"tis"``: each token's loss term is multiplied by sg[min(w_t, C)];
    - ``"mis"``: responses with ρ_i outside [1/C, C] leave the loss (their mask is cleared);
    - ``"none"``: nothing changes (the ratios are still measured and logged).

    Returns ``(token_weight_BT or None, keep_B, stats)``; stats (detached) hold the raw ratios
    before truncation: ``mismatch/ratio_mean|min|max`` over tokens, ``mismatch/seq_ratio_min|max``,
    ``mismatch/k1`` (mean of log μ - log π_old, an estimate of KL(μ‖π_old)) and
    ``mismatch/tis_capped_frac`` / ``mismatch/mis_masked_frac``.
    """
    if mode not in MISMATCH_MODES:
        raise ValueError(f"mode: unknown mismatch correction {mode!r}; valid: {list(MISMATCH_MODES)}")
    mask_BT = mask_BT.bool()
    delta_BT = torch.where(mask_BT, old_logp_BT - sampler_logp_BT, 0.0).clamp(-max_log_ratio, max_log_ratio)
    w_BT = torch.exp(delta_BT)
    lengths_B = mask_BT.sum(-1).clamp(min=1)
    rho_B = torch.exp(delta_BT.sum(-1) / lengths_B)
    has_B = mask_BT.any(-1)
    keep_B = torch.ones_like(has_B)
    weight_BT = None
    tokens = mask_BT.sum().clamp(min=1)
    capped = torch.zeros((), device=w_BT.device)
    if mode == "tis":
        weight_BT = torch.where(mask_BT, w_BT.clamp(max=cap), 0.0)
        capped = ((w_BT > cap) & mask_BT).sum() / tokens
    elif mode == "mis":
        keep_B = ~has_B | ((rho_B >= 1.0 / cap) & (rho_B <= cap))
    stats = {
        "mismatch/ratio_mean": torch.where(mask_BT, w_BT, 0.0).sum() / tokens,
        "mismatch/ratio_min": torch.where(mask_BT, w_BT, torch.inf).min(),
        "mismatch/ratio_max": torch.where(mask_BT, w_BT, -torch.inf).max(),
        "mismatch/seq_ratio_min": torch.where(has_B, rho_B, torch.inf).min(),
        "mismatch/seq_ratio_max": torch.where(has_B, rho_B, -torch.inf).max(),
        "mismatch/k1": -delta_BT.sum() / tokens,
        "mismatch/tis_capped_frac": capped.to(w_BT.dtype),
        "mismatch/mis_masked_frac": (~keep_B).sum().to(w_BT.dtype) / has_B.sum().clamp(min=1),
    }
    return weight_BT, keep_B, {k: v.detach() for k, v in stats.items()}
