"""The algorithm core: pure tensor functions (no model, no config object, no host syncs).

- ``policy_loss``: GSPO / GSPO-token / GRPO (policy.py) and CISPO / GMPO / SAPO (family.py) losses,
  with seq-mean, token-mean or Dr. GRPO's constant-normaliser aggregation.
- advantage estimators: ``group`` (eq. 6), ``rloo``, ``reinforce++``.
- ``informative_groups`` / ``soft_overlong_penalty`` / ``mismatch_correction`` (shaping.py): DAPO's
  dynamic sampling and overlong punishment, rollout-mismatch correction.
- ``kl_k3``: per-token KL estimate to a reference policy.
- ``gae`` / ``value_loss`` (ppo.py): generalised advantage estimation and PPO's clipped value loss.
- ``token_rewards`` / ``whiten`` (ppo.py): PPO's per-token rewards and advantage whitening.
- ``dpo_loss`` (dpo.py): DPO's sigmoid loss on summed completion log-probs; ``PAIR_LOSSES`` /
  ``register_pair_loss``: the registry of losses on (chosen, rejected) pairs.
- ``chunked_token_logprobs``: completion-token log-probs without materialising full logits.
- ``LOSS_LEVELS`` / ``register_level`` and ``ADVANTAGE_ESTIMATORS`` / ``register_advantage``: the
  registries that the algorithm table (``ALGORITHMS``, from :mod:`gspo.algorithms`) names.
"""

from gspo.algorithms import ALGORITHMS
from gspo.losses import family as _family  # noqa: F401  (registers cispo, gmpo, sapo)
from gspo.losses.advantages import (
    ADVANTAGE_ESTIMATORS,
    ADVANTAGE_SCALES,
    group_advantages,
    register_advantage,
    reinforce_pp_advantages,
    rloo_advantages,
)
from gspo.losses.dpo import PAIR_LOSSES, dpo_loss, register_pair_loss
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
from gspo.losses.ppo import gae, last_token_mask, token_rewards, value_loss, whiten, whiten_moments
from gspo.losses.registry import call_with_declared
from gspo.losses.shaping import MISMATCH_MODES, informative_groups, mismatch_correction, soft_overlong_penalty

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "ALGORITHMS",
    "MISMATCH_MODES",
    "PAIR_LOSSES",
    "LOSS_LEVELS",
    "LevelOutput",
    "LossInputs",
    "aggregate",
    "call_with_declared",
    "chunked_token_logprobs",
    "dpo_loss",
    "gae",
    "get_level",
    "group_advantages",
    "informative_groups",
    "mismatch_correction",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "soft_overlong_penalty",
    "value_loss",
    "kl_k3",
    "last_token_mask",
    "register_pair_loss",
    "token_rewards",
    "whiten",
    "whiten_moments",
    "policy_loss",
    "register_advantage",
    "register_level",
    "register_loss",
]
