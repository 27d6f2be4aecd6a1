"""The algorithm core: pure tensor functions (no model, no config object, no host syncs).

- ``policy_loss``: GSPO / GSPO-token / GRPO clipped losses with seq-mean or token-mean aggregation.
- ``group_advantages``: group-normalised advantages, zero for constant groups.
- ``kl_k3``: per-token KL estimate to a reference policy.
- ``chunked_token_logprobs``: completion-token log-probs without materialising full logits.
- ``LOSS_LEVELS`` / ``register_level`` and ``ADVANTAGE_ESTIMATORS`` / ``register_advantage``: the
  registries that the algorithm table (``ALGORITHMS``, from :mod:`gspo.algorithms`) names.
"""

from gspo.algorithms import ALGORITHMS
from gspo.losses.advantages import ADVANTAGE_ESTIMATORS, ADVANTAGE_SCALES, group_advantages, register_advantage
from gspo.losses.logprobs import chunked_token_logprobs
from gspo.losses.policy import (
    AGGREGATIONS,
    LOSS_LEVELS,
    LevelOutput,
    LossInputs,
    aggregate,
    get_level,
    kl_k3,
    policy_loss,
    register_level,
    register_loss,
)
from gspo.losses.registry import call_with_declared

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "ALGORITHMS",
    "LOSS_LEVELS",
    "LevelOutput",
    "LossInputs",
    "aggregate",
    "call_with_declared",
    "chunked_token_logprobs",
    "get_level",
    "group_advantages",
    "kl_k3",
    "policy_loss",
    "register_advantage",
    "register_level",
    "register_loss",
]
