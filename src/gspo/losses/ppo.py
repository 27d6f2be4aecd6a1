"""PPO's critic-side pure functions: generalised advantage estimation and the clipped value loss.

Generalised advantage estimation (Schulman, Moritz, Levine, Jordan, Abbeel 2016, "High-dimensional
continuous control using generalized advantage estimation", arXiv 1506.02438, eqs. 11-16), over the
completion tokens of each row, with the episode ending at the row's last real token:

    δ_t = r_t + γ·V_{t+1} − V_t          (V_{t+1} = 0 after the last real token)
    A_t = Σ_k (γλ)^k · δ_{t+k}           (the sum runs over the row's real tokens only)
    R_t = A_t + V_t                      (the value target, "returns")

γ = λ = 1 gives A_t = Σ_{k≥t} r_k − V_t (reward-to-go minus value). Masked positions are skipped:
they neither add a term nor break the chain (a hole inside a row joins the real tokens on its two
sides, as verl's ``compute_gae_advantage_return`` does), and A = R = 0 there.

PPO's clipped value loss (Schulman, Wolski, Dhariwal, Radford, Klimov 2017, "Proximal policy
optimization algorithms", arXiv 1707.06347; the value clipping of the OpenAI baselines
implementation, also in verl / TRL / OpenRLHF), with c = ``clip``:

    V_clip = V_old + clip(V − V_old, −c, c)
    ℓ_t    = 0.5 · max((V_t − R_t)², (V_clip,t − R_t)²)
    loss   = Σ_{real t} ℓ_t / normalizer      (normalizer defaults to the number of real tokens)

With a normalizer shared by all micro-batches of a step (the whole step's real-token count), the
micro-batch losses add up to the whole step's loss, as the policy loss's do.

Pure tensor functions: no model, no config object, no host sync (nothing calls ``.item()``); every
masked position is selected away with ``torch.where`` before any arithmetic, so NaN or inf written
there reaches neither the values nor the gradients.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

Tensor: TypeAlias = torch.Tensor


def gae(
    token_rewards_BT: Tensor, values_BT: Tensor, mask_BT: Tensor, *, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation per row; returns ``(advantages_BT, returns_BT)``.

    ``token_rewards_BT``: r_t per completion token (e.g. the verifiable reward on the last real token,
    minus β·KL per token); ``values_BT``: the critic's V_t (pass them detached); ``mask_BT``: the real
    completion tokens. δ_t = r_t + γ·V_{t+1} − V_t with V = 0 after a row's last real token,
    A_t = Σ_k (γλ)^k δ_{t+k}, returns = A + V; both are 0 at masked positions. A reversed scan over T
    (vectorised over B).
    """
    mask_BT = mask_BT.bool()
    r_BT = torch.where(mask_BT, token_rewards_BT, 0.0)
    v_BT = torch.where(mask_BT, values_BT, 0.0)
    dtype = torch.promote_types(r_BT.dtype, v_BT.dtype)
    r_BT, v_BT = r_BT.to(dtype), v_BT.to(dtype)
    batch, length = v_BT.shape
    next_value_B = v_BT.new_zeros(batch)  # V of the next real token; 0 once the row's episode ended
    next_adv_B = v_BT.new_zeros(batch)  # A of the next real token
    columns: list[Tensor] = [next_adv_B] * length
    for t in range(length - 1, -1, -1):
        real_B = mask_BT[:, t]
        delta_B = r_BT[:, t] + gamma * next_value_B - v_BT[:, t]
        adv_B = delta_B + (gamma * lam) * next_adv_B
        next_adv_B = torch.where(real_B, adv_B, next_adv_B)
        next_value_B = torch.where(real_B, v_BT[:, t], next_value_B)
        columns[t] = torch.where(real_B, adv_B, 0.0)
    adv_BT = torch.stack(columns, dim=1)
    returns_BT = torch.where(mask_BT, adv_BT + v_BT, 0.0)
    return adv_BT, returns_BT


def value_loss(
    values_BT: Tensor,
    old_values_BT: Tensor,
    returns_BT: Tensor,
    mask_BT: Tensor,
    *,
    clip: float = 0.2,
    normalizer: Tensor | float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped value loss: Σ_{real t} 0.5·max((V−R)², (clip(V, V_old−c, V_old+c)−R)²) / normalizer.

    ``normalizer`` defaults to the number of real tokens in ``mask_BT`` (at least 1); pass the whole
    step's real-token count to every micro-batch so that their losses add up to the step's.

    Stats (detached, over this call's real tokens): ``value_clip_frac`` (fraction of tokens where the
    clipped term is the larger, i.e. the one the gradient comes from), ``explained_variance``
    (1 − Var[R − V] / Var[R], population variances; 0 when Var[R] = 0), ``value_error`` (mean of
    (V − R)²), ``value_mean`` and ``returns_mean``.
    """
    mask_BT = mask_BT.bool()
    v_BT = torch.where(mask_BT, values_BT, 0.0)
    v_old_BT = torch.where(mask_BT, old_values_BT, 0.0)
    ret_BT = torch.where(mask_BT, returns_BT, 0.0)
    v_clip_BT = v_old_BT + (v_BT - v_old_BT).clamp(-clip, clip)
    unclipped_BT = (v_BT - ret_BT).square()
    clipped_BT = (v_clip_BT - ret_BT).square()
    loss_BT = 0.5 * torch.maximum(unclipped_BT, clipped_BT)
    tokens = mask_BT.sum().clamp(min=1)
    denominator = tokens if normalizer is None else normalizer
    loss = torch.where(mask_BT, loss_BT, 0.0).sum() / denominator

    with torch.no_grad():
        n = tokens.to(v_BT.dtype)

        def mean(x_BT: Tensor) -> Tensor:
            return torch.where(mask_BT, x_BT, 0.0).sum() / n

        residual_BT = ret_BT - v_BT
        var_returns = mean((ret_BT - mean(ret_BT)).square())
        var_residual = mean((residual_BT - mean(residual_BT)).square())
        safe_var = torch.where(var_returns > 0, var_returns, 1.0)
        stats = {
            "value_clip_frac": mean((clipped_BT > unclipped_BT).to(v_BT.dtype)),
            "explained_variance": torch.where(var_returns > 0, 1.0 - var_residual / safe_var, 0.0),
            "value_error": mean(unclipped_BT),
            "value_mean": mean(v_BT),
            "returns_mean": mean(ret_BT),
        }
    return loss, stats


def last_token_mask(mask_BT: Tensor) -> Tensor:
    """``[B, T]`` bool: True at each row's last real token (none in a row without real tokens)."""
    mask_BT = mask_BT.bool()
    after_BT = mask_BT.flip(-1).long().cumsum(-1).flip(-1)  # real tokens at or after t
    return mask_BT & (after_BT == 1)


def token_rewards(rewards_B: Tensor, mask_BT: Tensor, *, kl_BT: Tensor | None = None, kl_coef: float = 0.0) -> Tensor:
    """PPO's per-token rewards: the verifiable reward on each row's last real token, minus β·KL per token.

    r_t = 1[t is the row's last real token]·R − β·kl_t over the real tokens, 0 elsewhere. ``kl_BT`` is a
    per-token KL estimate to the reference (e.g. log π_old − log π_ref, the "k1" estimator verl and
    OpenRLHF put in the reward); ``kl_coef`` is β. A missing reward (NaN) counts as 0.
    """
    mask_BT = mask_BT.bool()
    reward_B = torch.nan_to_num(rewards_B, nan=0.0)
    dtype = torch.promote_types(reward_B.dtype, torch.float32)  # float64 stays float64 (tests, checks)
    r_BT = torch.where(last_token_mask(mask_BT), reward_B[:, None].to(dtype), 0.0)
    if kl_BT is not None and kl_coef:
        r_BT = r_BT - kl_coef * torch.where(mask_BT, kl_BT, 0.0).to(r_BT.dtype)
    return torch.where(mask_BT, r_BT, 0.0)


def whiten_moments(x_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """``[3]`` float64: the sum, sum of squares and count of ``x`` over real tokens (add them up across processes)."""
    mask_BT = mask_BT.bool()
    x0_BT = torch.where(mask_BT, x_BT, 0.0).double()  # float64: Σx² − n·μ² cancels badly in float32
    return torch.stack([x0_BT.sum(), x0_BT.square().sum(), mask_BT.sum().double()])


def whiten(x_BT: Tensor, mask_BT: Tensor, *, moments: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Advantage whitening over real tokens: (x − mean) / sqrt(var + eps), 0 at masked positions.

    ``moments`` (from :func:`whiten_moments`, summed over every process of the rollout) set the mean and
    the unbiased variance; by default those of ``x`` itself. verl's ``masked_whiten`` (shift_mean=True).
    """
    mask_BT = mask_BT.bool()
    total, total_sq, n = whiten_moments(x_BT, mask_BT) if moments is None else moments
    mean = total / n.clamp(min=1)
    var = (total_sq - n * mean.square()) / (n - 1).clamp(min=1)
    z_BT = (x_BT.double() - mean) * torch.rsqrt(var.clamp(min=0) + eps)
    return torch.where(mask_BT, z_BT, 0.0).to(x_BT.dtype)
