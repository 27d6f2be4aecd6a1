"""Direct preference optimisation's loss (Rafailov, Sharma, Mitchell, Ermon, Manning, Finn 2023,
"Direct preference optimization: your language model is secretly a reward model", arXiv 2305.18290,
eq. 7), the "sigmoid" loss of TRL's ``DPOTrainer``:

    implicit reward  r̂(x, y) = β · (log π_θ(y|x) − log π_ref(y|x))
    z_i  = r̂(x_i, y_i^chosen) − r̂(x_i, y_i^rejected) = β · [(c_i − c_ref,i) − (r_i − r_ref,i)]
    loss = −(1/B) Σ_i log σ(z_i)

where c, r are the chosen and rejected completions' log-probs summed over their tokens. The gradient
is ∂loss/∂c_i = −β·σ(−z_i)/B and ∂loss/∂r_i = +β·σ(−z_i)/B. Computed with ``logsigmoid``, so the loss
and its gradient stay finite for any finite margin (|z| of 1e4 and more).

A pure tensor function: no model, no config object, no host sync. It is registered as the pair loss
``"dpo"`` in ``PAIR_LOSSES``: the losses of algorithms that need ``pairs`` (:mod:`gspo.algorithms`),
each ``fn(chosen_logp_B, rejected_logp_B, ref_chosen_logp_B, ref_rejected_logp_B, *, <hyper-parameters
by name>) -> (loss, stats)`` with ``loss`` the mean over the B pairs.
"""

from __future__ import annotations

from typing import TypeAlias

import torch
import torch.nn.functional as F

from gspo.losses.registry import Registry

Tensor: TypeAlias = torch.Tensor

PAIR_LOSSES = Registry("pair loss")
register_pair_loss = PAIR_LOSSES.register


@register_pair_loss("dpo")
def dpo_loss(
    chosen_logp_B: Tensor,
    rejected_logp_B: Tensor,
    ref_chosen_logp_B: Tensor,
    ref_rejected_logp_B: Tensor,
    *,
    beta: float = 0.1,
) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO's sigmoid loss −mean log σ(β·[(c − c_ref) − (r − r_ref)]) over the B pairs.

    Each argument is ``[B]``: a completion's log-prob summed over its tokens (the reference's are
    treated as constants; pass them detached). Stats (detached): ``reward_margin`` (mean of the
    implicit-reward margin z), ``reward_accuracy`` (fraction of pairs with z > 0, i.e. whose implicit
    reward prefers the chosen completion), ``chosen_reward`` / ``rejected_reward`` (means of
    β·(c − c_ref) and β·(r − r_ref)).
    """
    chosen_reward_B = beta * (chosen_logp_B - ref_chosen_logp_B)
    rejected_reward_B = beta * (rejected_logp_B - ref_rejected_logp_B)
    margin_B = beta * ((chosen_logp_B - ref_chosen_logp_B) - (rejected_logp_B - ref_rejected_logp_B))
    loss = -F.logsigmoid(margin_B).mean()
    with torch.no_grad():
        stats = {
            "reward_margin": margin_B.mean(),
            "reward_accuracy": (margin_B > 0).to(margin_B.dtype).mean(),
            "chosen_reward": chosen_reward_B.mean(),
            "rejected_reward": rejected_reward_B.mean(),
        }
    return loss, stats
