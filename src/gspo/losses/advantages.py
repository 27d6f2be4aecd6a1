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
def reinforce_pp_advantages(rewards: Tensor, group_size: int, *, lengths_B: Tensor | None = None) -> Tensor:
    """REINFORCE++ (Hu et al. 2025, arXiv 2501.03262): the return normalised over the whole batch.

    With an outcome reward (γ = 1) every token of response i has return r_i, and the paper whitens the
    returns over all tokens of the global batch:

        Â_i = (r_i - μ) / σ,   μ, σ² = token-weighted mean and (unbiased) variance of the returns

    (``lengths_B`` are the response lengths; without them each response weighs 1). No group baseline;
    zero where σ = 0 or the reward is missing. ``group_size`` is unused (any layout).
    """
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


def _checked_rewards(rewards: Tensor, group_size: int) -> Tensor:
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: must be a positive integer, got {group_size!r}")
    if rewards.dim() != 1 or rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards: must be [B] with B a multiple of group_size={group_size}, got {tuple(rewards.shape)}"
        )
    return rewards.to(torch.float64 if rewards.dtype == torch.float64 else torch.float32)
