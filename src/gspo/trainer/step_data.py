"""Typed data of one training step: the rollout, π_old bookkeeping, and the statistics accumulator.

- :class:`RolloutBatch`: what a step samples and scores on this process: the prompts' rows, the
  sampler's output (prompt and completion tokens, sampler log-probs), the completions as text, a
  per-token *loss mask* (every generated token by default; a multi-turn environment can exclude
  tokens the model did not generate), the rewards per function and in total, and the advantages;
- :class:`OldLogProbs`: where π_old comes from for each micro-batch, decided once per step;
- :class:`UpdateInputs`: what the optimizer steps of one rollout read;
- :class:`StepStats`: weighted sums, minima and maxima of the per-micro-batch statistics, with one
  ``reduce`` across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch

from gspo.sampling import Rollout
from gspo.trainer.reward_runner import RewardOutput

Tensor: TypeAlias = torch.Tensor


@dataclass
class RolloutBatch:
    """One step's rollout on this process (rows laid out group by group: G completions per prompt)."""

    rows: list[dict[str, Any]]  # the dataset rows of this process's prompts
    sampled: Rollout  # prompt / completion token ids and masks, sampler log-probs, finished flags
    completions: list[str]
    loss_mask_BT: Tensor  # bool: tokens that enter the loss
    rewards: RewardOutput  # per function and weighted total, gathered over all processes
    rewards_B: Tensor  # the global total rewards (float32; NaN = missing)
    adv_B: Tensor  # this process's advantages: [B] per response, or [B, T] per token
    seconds: dict[str, float] = field(default_factory=dict)  # "sample", "reward"
    metrics: dict[str, float] = field(default_factory=dict)  # dynamic sampling, overlong, mismatch (host floats)

    @property
    def size(self) -> int:
        """Rows on this process."""
        return int(self.sampled.completion_ids_BT.shape[0])

    @property
    def sampler_logp_BT(self) -> Tensor:
        return self.sampled.logp_BT

    def advantages(self, idx: Tensor, last: int) -> Tensor:
        """Rows ``idx``'s advantages: ``[b]`` per response, or ``[b, last]`` per token (episodes' turns)."""
        adv = self.adv_B[idx]
        return adv[:, :last] if adv.dim() == 2 else adv


class OldLogProbs:
    """π_old of a rollout's rows, in one place.

    - ``logp_BT=None``: π_old ≡ π_θ at every update (on-policy, or a loss that does not use it): each
      micro-batch's own forward, detached;
    - ``logp_BT`` given (the sampler's, or a no-grad recomputation): indexed per micro-batch;
    - ``fill_first=True``: the recomputation left the rows of epoch 0's first minibatch at 0. No
      optimizer step has been taken when that minibatch runs, so its own forward *is* π_old there:
      it is used (detached) and written into ``logp_BT`` for later epochs;
    - ``token_weight_BT``: set by the rollout-mismatch correction (truncated importance weights).
    """

    def __init__(self, logp_BT: Tensor | None = None, *, fill_first: bool = False):
        self.logp_BT = logp_BT
        self.fill_first = fill_first
        #: ``[B, T]`` detached per-token loss weights (the mismatch correction's TIS weights), or None
        self.token_weight_BT: Tensor | None = None
        self._fresh = False

    def begin_minibatch(self, epoch: int, minibatch: int) -> None:
        self._fresh = self.fill_first and epoch == 0 and minibatch == 0

    def take(self, idx: Tensor, last: int, logp_bT: Tensor) -> Tensor:
        """π_old of rows ``idx`` (columns ``:last``), given this micro-batch's own log-probs ``logp_bT``."""
        if self.logp_BT is None:
            return logp_bT.detach()
        if self._fresh:
            old = logp_bT.detach()
            self.logp_BT[idx, :last] = old.to(self.logp_BT.dtype)
            return old
        return self.logp_BT[idx, :last]


class StepStats:
    """Accumulates one rollout's update statistics; ``reduce`` returns host floats for the whole step.

    Each micro-batch's statistics are weighted by its share of the rollout (rows / B / epochs), so
    their sum over the step is the rollout mean; ratio extremes are min / max over micro-batches.
    """

    def __init__(self, rollout_rows: int, epochs: int, device: torch.device):
        self.rollout_rows, self.epochs, self.device = rollout_rows, epochs, device
        self.sums: dict[str, Any] = {}
        self.mins: list[Tensor] = []
        self.maxs: list[Tensor] = []
        self.entropies: list[Tensor] = []
        self.losses: list[Tensor] = []
        self.grad_norms: list[Tensor] = []
        self.skipped = 0

    def add_micro(self, stats: dict[str, Tensor], entropy_bT: Tensor, mask_bT: Tensor, rows: int) -> None:
        w = rows / self.rollout_rows / self.epochs
        for key, value in stats.items():
            if key not in ("ratio_min", "ratio_max"):
                self.sums[key] = self.sums.get(key, 0.0) + w * value
        self.mins.append(stats["ratio_min"])
        self.maxs.append(stats["ratio_max"])
        self.entropies.append((torch.where(mask_bT, entropy_bT, 0.0).sum() / mask_bT.sum().clamp(min=1)) * w)

    def add_update(self, loss: Tensor, grad_norm: Tensor, skipped: bool) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.skipped += int(skipped)

    def reduce(self, dist) -> dict[str, float]:
        """Sums over processes for the weighted means, min / max for the ratio extremes."""
        keys = sorted(self.sums)
        parts = [torch.as_tensor(self.sums[k], device=self.device, dtype=torch.float64) for k in keys]
        reduced = dist.all_reduce(torch.stack(parts + [torch.stack(self.entropies).sum().double()]))
        out = {k: float(v) for k, v in zip(keys, reduced[:-1])}
        inf = torch.tensor(float("inf"), device=self.device, dtype=torch.float64)
        low = torch.stack([m.double() for m in self.mins]).min() if self.mins else inf
        high = torch.stack([m.double() for m in self.maxs]).max() if self.maxs else -inf
        out.update(
            loss=float(torch.stack(self.losses).mean()),
            grad_norm=float(torch.stack(self.grad_norms).mean()),
            ratio_min=float(dist.all_reduce(low, "min")),
            ratio_max=float(dist.all_reduce(high, "max")),
            entropy=float(reduced[-1]),
            skipped_steps=self.skipped,
        )
        return out


def checked_rows(train_data: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The training rows as a list; ValueError unless (the first and last) are dicts with a 'prompt'."""
    rows = list(train_data)
    for i, row in enumerate(rows[:1] + rows[-1:]):
        if not isinstance(row, dict) or "prompt" not in row:
            raise ValueError(
                f"train_data: every row must be a dict with a 'prompt' key (row {i} is {type(row).__name__})"
            )
    return rows


@dataclass
class UpdateInputs:
    """What the optimizer steps of one rollout read: ``perms[e]`` orders the global rows in epoch e."""

    batch: RolloutBatch
    old: OldLogProbs
    ref_logp_BT: Tensor | None
    perms: list[Tensor]
