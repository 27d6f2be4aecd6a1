"""Online preference optimisation: the update of an algorithm that needs ``pairs`` (``dpo``).

The rollout is sampled and scored as for any algorithm (G responses per prompt); then, within each
group, the best response by reward is *chosen* and the worst *rejected* (the first of equals; missing
rewards are left out). A group whose rewards are all equal (or with fewer than two scored responses)
gives no pair. Each pair's completions are scored by the policy (with gradient) and by the reference
(the trainer's KL reference: the starting policy, i.e. the adapter-disabled model under LoRA, else the
frozen copy made at start; it scores only the paired rows, 2 of each group's G), log-probs summed over each completion's loss-mask tokens, and the
algorithm's *pair loss* (``gspo.losses.PAIR_LOSSES``; DPO's sigmoid loss, β from the table or
``algorithm_options``) is minimised.

Optimizer steps: ``num_epochs`` passes over the rollout, each split into ``num_minibatches``
minibatches of whole groups (consecutive slices of a random order of the step's global groups, drawn
from the trainer's checkpointed shuffle generator, so that the minibatches do not depend on the number
of processes), one AdamW step each; the loss is divided by the number of pairs in the
whole minibatch (all processes), so micro-batching changes nothing. A minibatch without any pair takes
no step (counted in ``pairs/empty_minibatches``). Logged per step: ``pairs`` (pairs in the rollout),
``pairs/empty_minibatches``, and the loss's statistics averaged over pairs (DPO: ``reward_margin``,
``reward_accuracy``, ``chosen_reward``, ``rejected_reward``).

Online DPO after Guo et al. 2024 ("Direct language model alignment from online AI feedback", arXiv
2402.04792), with the verifiable reward as the judge and best-vs-worst pairing as in RAFT-style /
OpenRLHF's online DPO.
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import torch

from gspo.losses import PAIR_LOSSES, call_with_declared

logger = logging.getLogger("gspo")

Tensor: TypeAlias = torch.Tensor


def best_worst_pairs(rewards_B: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(has_pair_G, chosen_G, rejected_G)``: per group, whether it gives a pair and the row indices of
    its best and worst response (argmax / argmin of the reward, first of equals; NaN = missing)."""
    r_GN = rewards_B.reshape(-1, group_size).to(torch.float64)
    valid_GN = ~torch.isnan(r_GN)
    best_G = torch.where(valid_GN, r_GN, -torch.inf).argmax(dim=1)
    worst_G = torch.where(valid_GN, r_GN, torch.inf).argmin(dim=1)
    rows = torch.arange(r_GN.shape[0])
    has_pair_G = (valid_GN.sum(1) >= 2) & (r_GN[rows, best_G] > r_GN[rows, worst_G])
    base_G = rows * group_size
    return has_pair_G, base_G + best_G, base_G + worst_G


class PairUpdate:
    """The optimizer steps of one rollout for a pair loss (see the module docstring)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.loss_fn = PAIR_LOSSES.get_fn(trainer.algorithm.loss)
        self.hparams = dict(trainer.loss_hparams)

    def _pairs(self, batch) -> tuple[Tensor, Tensor, Tensor]:
        """This process's groups: ``best_worst_pairs`` of its rows' rewards."""
        B, rank = batch.size, self.trainer.dist.rank
        return best_worst_pairs(batch.rewards_B[rank * B : (rank + 1) * B], self.trainer.config.group_size)

    def paired_rows(self, batch) -> Tensor:
        """This process's rows that belong to a pair (sorted): the only ones the reference has to score."""
        has_pair_G, chosen_G, rejected_G = self._pairs(batch)
        rows = torch.cat([chosen_G[has_pair_G], rejected_G[has_pair_G]]).sort().values
        return rows.to(self.trainer.device)

    def update(self, inputs) -> dict[str, Any]:
        tr, cfg = self.trainer, self.trainer.config
        batch = inputs.batch
        has_pair_G, chosen_G, rejected_G = self._pairs(batch)
        assert inputs.ref_logp_BT is not None, "a pair loss needs the reference's log-probs"
        ref_sum_B = torch.where(batch.loss_mask_BT, inputs.ref_logp_BT, 0.0).sum(-1)
        self._sums: dict[str, Tensor] = {}
        self._losses: list[Tensor] = []
        self._norms: list[Tensor] = []
        self._skipped = self._empty = 0
        n_pairs = tr.dist.all_reduce(has_pair_G.sum().double().to(tr.device))
        tr.model.train()
        share = has_pair_G.numel()  # groups on this process: global groups [rank·share, (rank+1)·share)
        for _ in range(cfg.num_epochs):
            order = torch.randperm(cfg.prompts_per_step, generator=tr.shuffle_gen)  # the same on every process
            for chunk in torch.tensor_split(order, cfg.num_minibatches):
                groups = chunk[(chunk >= tr.dist.rank * share) & (chunk < (tr.dist.rank + 1) * share)]
                groups = groups - tr.dist.rank * share
                groups = groups[has_pair_G[groups]]
                pairs = (chosen_G[groups].to(tr.device), rejected_G[groups].to(tr.device))
                self._minibatch_step(batch, pairs, ref_sum_B)
        tr.optimizer.zero_grad(set_to_none=True)
        tr.skipped_steps += self._skipped
        total = (n_pairs * cfg.num_epochs).clamp(min=1)
        keys = sorted({k for part in tr.dist.gather_objects([sorted(self._sums)]) for k in part})
        zero = torch.zeros((), device=tr.device)
        out = {k: float(tr.dist.all_reduce(torch.as_tensor(self._sums.get(k, zero)).double()) / total) for k in keys}
        out.update(
            loss=float(torch.stack(self._losses).mean()) if self._losses else float("nan"),
            grad_norm=float(torch.stack(self._norms).mean()) if self._norms else float("nan"),
            skipped_steps=self._skipped,
            pairs=float(n_pairs),
            **{"pairs/empty_minibatches": self._empty},
        )
        return out

    def _minibatch_step(self, batch, pairs: tuple[Tensor, Tensor], ref_sum_B: Tensor) -> None:
        tr, cfg = self.trainer, self.trainer.config
        chosen, rejected = pairs
        count = tr.dist.all_reduce(torch.tensor(float(chosen.numel()), device=tr.device))
        if float(count) == 0:
            self._empty += 1
            return
        normalizer = count / tr.dist.world
        tr.optimizer.zero_grad(set_to_none=True)
        per = max(1, cfg.micro_batch_size // 2)
        micro: list[slice | None] = [slice(s, s + per) for s in range(0, chosen.numel(), per)] or [None]
        mb_loss = torch.zeros((), device=tr.device)
        for j, part in enumerate(micro):
            with tr.dist.no_sync(tr.model, active=j < len(micro) - 1):
                if part is None:  # no pair of this minibatch here: join the all-reduce with zero
                    logp, _, _, _ = tr._score(tr.model, batch, torch.arange(1, device=tr.device))
                    (logp.sum() * 0.0).backward()
                    continue
                mb_loss = mb_loss + self._micro_step(batch, chosen[part], rejected[part], ref_sum_B, normalizer)
        mb_loss = tr.dist.all_reduce(mb_loss)
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        params = [p for p in tr.model.parameters() if p.requires_grad]
        grad_norm = tr.dist.clip_grad_norm(tr.model, params, max_norm)
        if torch.isfinite(grad_norm) and torch.isfinite(mb_loss):
            tr.optimizer.step()
            tr.scheduler.step()
            tr.optimizer_steps += 1
        else:
            tr.optimizer.zero_grad(set_to_none=True)
            self._skipped += 1
            logger.warning("step %d: non-finite loss or gradient; optimizer step skipped", tr.step + 1)
        self._losses.append(mb_loss)
        self._norms.append(grad_norm)

    def _micro_step(self, batch, chosen: Tensor, rejected: Tensor, ref_sum_B: Tensor, normalizer: Tensor) -> Tensor:
        """Forward + backward of k pairs (2k rows in one scoring pass); returns their share of the loss."""
        tr = self.trainer
        k = chosen.numel()
        logp, _, mask, _ = tr._score(tr.model, batch, torch.cat([chosen, rejected]))
        seq_B = torch.where(mask, logp, 0.0).sum(-1)
        ref_B = ref_sum_B[torch.cat([chosen, rejected])].to(seq_B.dtype)
        loss, stats = call_with_declared(self.loss_fn, seq_B[:k], seq_B[k:], ref_B[:k], ref_B[k:], **self.hparams)
        share = loss * k / normalizer
        share.backward()
        for key, value in stats.items():
            self._sums[key] = self._sums.get(key, 0.0) + value.detach() * k
        return share.detach() / tr.dist.world
