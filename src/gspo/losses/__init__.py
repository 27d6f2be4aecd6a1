"""The algorithm core: pure tensor functions (no model, no config object, no host syncs).

- ``policy_loss``: GSPO / GSPO-token / GRPO clipped losses with seq-mean or token-mean aggregation.
- ``group_advantages``: group-normalised advantages, zero for constant groups.
- ``kl_k3``: per-token KL estimate to a reference policy.
- ``chunked_token_logprobs``: completion-token log-probs without materialising full logits.
- ``LOSS_LEVELS`` / ``register_level``: the registry of loss levels; ``ALGORITHMS`` maps the
  user-facing algorithm names to a level and the paper's clip range.
"""

from gspo.losses.advantages import ADVANTAGE_SCALES, group_advantages
from gspo.losses.logprobs import chunked_token_logprobs
from gspo.losses.policy import (
    AGGREGATIONS,
    DEFAULT_CLIP,
    LOSS_LEVELS,
    aggregate,
    get_level,
    kl_k3,
    policy_loss,
    register_level,
)

#: algorithm name -> (loss level, default ε_low, default ε_high) — the paper's settings (section 5.1).
ALGORITHMS: dict[str, tuple[str, float, float]] = {
    "gspo": ("sequence", *DEFAULT_CLIP["sequence"]),
    "gspo-token": ("sequence_token", *DEFAULT_CLIP["sequence_token"]),
    "grpo": ("token", *DEFAULT_CLIP["token"]),
}

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "ALGORITHMS",
    "DEFAULT_CLIP",
    "LOSS_LEVELS",
    "aggregate",
    "chunked_token_logprobs",
    "get_level",
    "group_advantages",
    "kl_k3",
    "policy_loss",
    "register_level",
]
