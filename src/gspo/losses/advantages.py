"""Group-relative advantages (GSPO eq. 6, shared with GRPO).

    Â_i = (r_i - mean_j r_j) / std_j r_j        over the G responses to the same prompt

``scale`` chooses the denominator: ``"group"`` (the paper's), ``"batch"`` (one std over the whole
batch, as in Dr. GRPO-style variants) or ``"none"`` (mean-centred only).

Choices the paper leaves open, stated here:
  - std is the *sample* standard deviation (ddof = 1), as in the GRPO reference implementations
    (DeepSeekMath, TRL, verl); for G = 8 this is a constant factor sqrt(7/8) against ddof = 0.
  - No ε is added to the std. A group whose rewards are all equal (std 0) gets advantage exactly 0
    (it carries no signal), selected with ``torch.where`` so it is never NaN.
  - A NaN reward marks a missing score (a reward function returned ``None``): it is left out of its
    group's mean and std, and its own advantage is 0.

Rows are laid out group by group: rows [g·G, (g+1)·G) answer the same prompt.

Estimators are registered in ``ADVANTAGE_ESTIMATORS`` (``@register_advantage(name)``) with the
signature ``fn(rewards_B, group_size, *, <options by name>) -> adv_B`` (or ``adv_BT``); an algorithm
names its estimator in :mod:`gspo.algorithms`. ``"group"`` is eq. 6. ``"gae"`` (PPO's generalised
advantage estimation, :func:`gspo.losses.ppo.gae`) needs the critic's values, which do not exist when
the rollout is scored: its entry here returns zeros, and the trainer's critic
(:mod:`gspo.trainer.critic`) replaces them by the whitened GAE advantages before the update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import torch

from gspo.losses.registry import Registry

Tensor: TypeAlias = torch.Tensor

ADVANTAGE_ESTIMATORS = Registry("advantage estimator")
register_advantage = ADVANTAGE_ESTIMATORS.register

ADVANTAGE_SCALES = ("group", "batch", "none")


def _nan_mean_std(x_GN: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, sample std (ddof=1) and count over ``dim``, ignoring NaN entries."""
    valid = ~torch.isnan(x_GN)
    count = valid.sum(dim=dim, keepdim=True)
    x0 = torch.where(valid, x_GN, 0.0)
    mean = x0.sum(dim=dim, keepdim=True) / count.clamp(min=1)
    sq = torch.where(valid, (x_GN - mean) ** 2, 0.0).sum(dim=dim, keepdim=True)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    return mean, std, count


@register_advantage("group")
def group_advantages(rewards: Tensor, group_size: int, *, scale: str = "group") -> Tensor:
    """Per-response advantages ``[B]`` from rewards ``[B]`` laid out in groups of ``group_size``.

    Zero for groups whose rewards are all equal (and for missing rewards); never NaN.
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"scale: unknown advantage scale {scale!r}; valid: {list(ADVANTAGE_SCALES)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: must be a positive integer, got {group_size!r}")
    if rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards: must be [B] with B a multiple of group_size={group_size}, got {tuple(rewards.shape)}"
        )
    rewards_B = rewards.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
    r_GN = rewards_B.view(-1, group_size)
    mean_G1, std_G1, count_G1 = _nan_mean_std(r_GN, dim=1)
    centred_GN = r_GN - mean_G1
    if scale == "group":
        denom = std_G1
        ok = (count_G1 > 1) & (std_G1 > 0)
    elif scale == "batch":
        _, denom, count = _nan_mean_std(rewards_B, dim=0)
        ok = (count > 1) & (denom > 0) & (count_G1 > 0)
    else:
        denom = torch.ones_like(std_G1)
        ok = count_G1 > 0
    # A group with one distinct value has every centred reward 0 anyway; `ok` guards the division.
    adv_GN = torch.where(ok & ~torch.isnan(r_GN), centred_GN / torch.where(ok, denom, 1.0), 0.0)
    return adv_GN.reshape(-1)


@register_advantage("rloo")
def rloo_advantages(rewards: Tensor, group_size: int) -> Tensor:
    """RLOO (Ahmadian et al. 2024, arXiv 2402.14740): each response's baseline is the mean of the *others*.

        Â_i = r_i - (1/(G-1)) Σ_{j≠i} r_j = G/(G-1)·(r_i - mean_j r_j)

    No std scaling. A missing (NaN) reward is left out (G counts the scored responses) and gets 0;
    a group with fewer than two scored responses gets 0.
    """
    r_GN = _checked_rewards(rewards, group_size).view(-1, group_size)
    mean_G1, _, count_G1 = _nan_mean_std(r_GN, dim=1)
    scale_G1 = count_G1 / (count_G1 - 1).clamp(min=1)
    ok = (count_G1 > 1) & ~torch.isnan(r_GN)
    return torch.where(ok, scale_G1 * (r_GN - mean_G1), 0.0).reshape(-1)


@register_advantage("reinforce++")
def reinforce_pp_advantages(
    rewards: Tensor,
    group_size: int,
    *,
    lengths_B: Tensor | None = None,
    token_rewards_BT: Tensor | None = None,
    mask_BT: Tensor | None = None,
    reduce_sums: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262): the return normalised over the whole batch.

    With an outcome reward (γ = 1) every token of response i has return r_i, and the paper whitens the
    returns over all tokens of the global batch:

        Â_i = (r_i - μ) / σ,   μ, σ² = token-weighted mean and (unbiased) variance of the returns

    (``lengths_B`` are the response lengths; without them each response weighs 1). No group baseline;
    zero where σ = 0 or the reward is missing. ``group_size`` is unused (any layout).

    **KL in the reward** (the paper's form, section 3): given ``token_rewards_BT`` (r_t = −β·KL_t on
    every token, plus the outcome reward on the last one: :func:`gspo.losses.ppo.token_rewards`) and
    ``mask_BT``, the return of token t is G_t = Σ_{k≥t} r_k (γ = 1) and the ``[B, T]`` advantages are
    the returns whitened over every real token, Â_t = (G_t − μ) / σ, 0 at masked positions. The rows
    are then this process's only: ``reduce_sums`` (e.g. an all-reduce) adds the ``[3]`` sums (Σ G,
    Σ G², count) over processes, so μ and σ are those of the global batch. With β = 0 this equals the
    outcome form above with ``lengths_B`` (each response's G_t = r_i on all its tokens).
    """
    if token_rewards_BT is not None:
        if mask_BT is None:
            raise ValueError("mask_BT: required with token_rewards_BT")
        return _whitened_returns(token_rewards_BT, mask_BT, reduce_sums)
    r_B = _checked_rewards(rewards, group_size)
    valid = ~torch.isnan(r_B)
    w_B = torch.ones_like(r_B) if lengths_B is None else lengths_B.to(r_B.dtype)
    w_B = torch.where(valid, w_B, 0.0)
    n = w_B.sum()
    r0 = torch.where(valid, r_B, 0.0)
    mean = (w_B * r0).sum() / n.clamp(min=1)
    var = (w_B * (r0 - mean) ** 2).sum() / (n - 1).clamp(min=1)
    std = var.sqrt()
    ok = valid & (std > 0) & (n > 1)
    return torch.where(ok, (r0 - mean) / torch.where(std > 0, std, 1.0), 0.0)


@register_advantage("gae")
def gae_placeholder(rewards: Tensor, group_size: int) -> Tensor:
    """Zeros: GAE is computed by the trainer's critic once its values exist (:mod:`gspo.trainer.critic`)."""
    return torch.zeros_like(_checked_rewards(rewards, group_size))


def _whitened_returns(
    token_rewards_BT: Tensor, mask_BT: Tensor, reduce_sums: Callable[[Tensor], Tensor] | None
) -> Tensor:
    """Returns-to-go (γ = 1) of masked token rewards, whitened over real tokens (unbiased variance)."""
    mask_BT = mask_BT.bool()
    # float64 throughout: returns-to-go and Σx² − n·μ² lose digits in float32 (large returns, small KL)
    r_BT = torch.where(mask_BT, torch.nan_to_num(token_rewards_BT, nan=0.0), 0.0).double()
    returns_BT = torch.where(mask_BT, r_BT.flip(-1).cumsum(-1).flip(-1), 0.0)
    sums = torch.stack([returns_BT.sum(), returns_BT.square().sum(), mask_BT.sum().double()])
    if reduce_sums is not None:
        sums = reduce_sums(sums)
    total, total_sq, n = sums[0], sums[1], sums[2]
    mean = total / n.clamp(min=1)
    var = ((total_sq - n * mean**2) / (n - 1).clamp(min=1)).clamp(min=0)
    std = var.sqrt()
    ok = mask_BT & (std > 0) & (n > 1)
    out_dtype = torch.promote_types(token_rewards_BT.dtype, torch.float32)
    return torch.where(ok, (returns_BT - mean) / torch.where(std > 0, std, 1.0), 0.0).to(out_dtype)


def _checked_rewards(rewards: Tensor, group_size: int) -> Tensor:
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: must be a positive integer, got {group_size!r}")
    if rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards: must be [B] with B a multiple of group_size={group_size}, got {tuple(rewards.shape)}"
        )
    return rewards.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
