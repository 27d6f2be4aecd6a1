"""Per-turn advantages for multi-turn episodes (pure tensor functions).

An episode i of a group has model turns k = 0..K_i-1, a reward r_i,k after each turn (0 where the
environment gave none) and a final reward; its return is R_i = final_i + Σ_k r_i,k. The configured
estimator turns the returns into one advantage per episode, Â_i (eq. 6 by default). With per-turn
rewards the tokens of turn k get the advantage of the reward still to come from that turn on:

    G_i,k  = R_i − Σ_{k'<k} r_i,k'                     (reward-to-go, γ = 1)
    Â_i,k  = Â_i − (Σ_{k'<k} r_i,k') / σ                σ: the scale the estimator divided by

so with the group estimator Â_i,k = (G_i,k − mean_j R_j) / std_j R_j: each turn is judged by what
followed it against the group's baseline, and the first turn's advantage is the episode's. Without
per-turn rewards every turn gets Â_i (the per-trajectory case, identical to a single-turn rollout).
σ is the group's sample std of R (ddof 1) for ``scale="group"``, the batch's for ``"batch"`` and 1
for ``"none"``; a σ of 0 counts as 1 (the group's Â_i is then 0 and the turns keep their differences).

Environment tokens (``turn_BT == -1``) get advantage 0; the loss mask excludes them anyway.
"""

from __future__ import annotations

from typing import TypeAlias

import torch

Tensor: TypeAlias = torch.Tensor

__all__ = ["spread_turn_advantages", "turn_advantages"]


def _scale_B(returns_B: Tensor, group_size: int, scale: str) -> Tensor:
    if scale == "none":
        return torch.ones_like(returns_B)
    if scale == "batch":
        std = returns_B.std() if returns_B.numel() > 1 else returns_B.new_zeros(())
        std_B = std.expand_as(returns_B)
    elif scale == "group":
        std_B = returns_B.view(-1, group_size).std(dim=1, keepdim=True).expand(-1, group_size).reshape(-1)
    else:
        raise ValueError(f"scale: must be 'group', 'batch' or 'none', got {scale!r}")
    return torch.where(std_B > 0, std_B, torch.ones_like(std_B))


def turn_advantages(
    adv_B: Tensor, returns_B: Tensor, turn_rewards_BK: Tensor, group_size: int, *, scale: str = "group"
) -> Tensor:
    """``[B, K]`` per-turn advantages Â_i,k (module docstring); ``turn_rewards_BK`` is 0 past a row's turns."""
    before_BK = turn_rewards_BK.cumsum(-1) - turn_rewards_BK  # Σ_{k'<k} r_i,k'
    return adv_B.unsqueeze(-1) - before_BK / _scale_B(returns_B, group_size, scale).unsqueeze(-1)


def spread_turn_advantages(adv_BK: Tensor, turn_BT: Tensor) -> Tensor:
    """``[B, T]``: each token gets its turn's advantage; environment tokens (turn -1) get 0."""
    index_BT = turn_BT.clamp(min=0)
    return torch.where(turn_BT >= 0, adv_BK.gather(1, index_BT), torch.zeros((), dtype=adv_BK.dtype))
