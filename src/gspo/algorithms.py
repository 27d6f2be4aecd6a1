"""The algorithm table: every RL algorithm gspo trains, as one entry each (torch-free).

Config validation, ``gspo train --help``, the trainer and the README all read this table, so adding
an algorithm is one loss function (``@register_loss`` in :mod:`gspo.losses.policy`) plus one
``register_algorithm(Algorithm(...))`` call. An entry says:

- ``loss``: the name of a registered loss (a key of ``gspo.losses.LOSS_LEVELS``), or a callable;
- ``advantage``: the name of a registered advantage estimator (a key of
  ``gspo.losses.ADVANTAGE_ESTIMATORS``: ``"group"`` is eq. 6);
- ``defaults``: the loss's hyper-parameters and their default values (the paper's clip ranges live
  here and only here). A loss function receives each hyper-parameter *by name* as a keyword argument;
  a value comes from ``algorithm_options``, else from the config field of the same name when it is
  set (``clip_low``, ``clip_high``, ``max_log_ratio``), else from ``defaults``;
- ``settings``: run settings this algorithm chooses (``aggregation``, ``advantage_scale``,
  ``dynamic_sampling``, ``overlong_buffer_frac``, ...): config fields whose value ``None`` means "the
  algorithm's", so DAPO turns dynamic sampling on and GSPO leaves it off, and a user can set either
  way for any algorithm (``GSPOConfig.setting(name)`` resolves them);
- ``needs``: what the trainer must hand the loss besides the policy's log-probs, from ``NEEDS``:
  ``old_logp`` (π_old, the behaviour policy), ``reference`` (π_ref log-probs), ``critic`` (value
  estimates per token) and ``pairs`` (chosen / rejected responses within a group). The trainer
  provides what an entry needs by looking at these flags, never at the algorithm's name: ``critic``
  builds a value model and replaces the rollout's advantages by GAE over its values
  (:mod:`gspo.trainer.critic`); ``pairs`` pairs the best and worst response of each group and
  updates with a *pair loss* (a key of ``gspo.losses.PAIR_LOSSES``) instead of a per-token one
  (:mod:`gspo.trainer.pairs`). A need the trainer cannot provide is refused at validation.

The entries and their papers (formulas in each loss's docstring, :mod:`gspo.losses.policy` and
:mod:`gspo.losses.family`; ``docs/algorithms.md`` has the table): GSPO, GSPO-token and GRPO (Zheng et al.
2025); DAPO (Yu et al. 2025: clip-higher, token-mean, dynamic sampling, soft overlong punishment);
Dr. GRPO (Liu et al. 2025: no std scaling, constant normaliser); CISPO (MiniMax-M1); GMPO (Zhao et al.
2025); SAPO (Gao et al. 2025); RLOO (Ahmadian et al. 2024) and REINFORCE++ (Hu et al. 2025), which are
advantage estimators under the token loss (``advantage`` selects an estimator for any loss); PPO
(Schulman et al. 2017, with a learned critic and GAE, as in Ouyang et al. 2022 and verl), the token
loss needing ``old_logp`` and ``critic`` with the ``"gae"`` estimator; online DPO (Rafailov et al. 2023;
Guo et al. 2024 "Direct language model alignment from online AI feedback"), the ``"dpo"`` pair loss
needing ``reference`` and ``pairs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

#: What a loss can ask the trainer for (besides the policy's log-probs, advantages and the mask).
NEEDS = ("old_logp", "reference", "critic", "pairs")
#: The advantage estimators gspo ships (registered in gspo.losses.advantages; named here torch-free).
ADVANTAGE_ESTIMATOR_NAMES = ("group", "rloo", "reinforce++", "gae")
#: Losses that take per-token advantages ``[B, T]`` (the others take one advantage per sequence).
PER_TOKEN_ADVANTAGE_LOSSES = ("sequence_token", "token", "cispo", "sapo")
#: Estimators that take per-token rewards (the KL in the reward, ``reward_kl_coef``) without a critic.
TOKEN_REWARD_ESTIMATORS = ("reinforce++",)
#: The needs today's trainer can provide.
PROVIDED_NEEDS = ("old_logp", "reference", "critic", "pairs")


@dataclass(frozen=True)
class Algorithm:
    """One entry of the table (see the module docstring)."""

    name: str
    loss: Union[str, Callable[..., Any]]
    summary: str
    advantage: str = "group"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    needs: frozenset[str] = frozenset({"old_logp"})
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise ValueError(f"algorithm {self.name!r}: unknown needs {unknown}; valid: {list(NEEDS)}")

    @property
    def loss_name(self) -> str:
        return self.loss if isinstance(self.loss, str) else getattr(self.loss, "__name__", repr(self.loss))


ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(algorithm: Algorithm, *, replace: bool = False) -> Algorithm:
    """Add ``algorithm`` to the table (``replace=True`` to overwrite an entry of the same name)."""
    if algorithm.name in ALGORITHMS and not replace:
        raise ValueError(f"algorithm {algorithm.name!r} is already registered")
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get_algorithm(name: str) -> Algorithm:
    """The entry for ``name``; an unknown name raises a ValueError listing the valid ones."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms: {sorted(ALGORITHMS)}") from None


def loss_defaults(loss: str) -> Mapping[str, Any]:
    """The hyper-parameter defaults of the first algorithm whose loss is ``loss`` (empty if none)."""
    for algorithm in ALGORITHMS.values():
        if algorithm.loss == loss:
            return algorithm.defaults
    return {}


def describe() -> str:
    """One line per algorithm (``--help`` and the README)."""
    return "; ".join(f"'{a.name}': {a.summary}" for a in ALGORITHMS.values())


# GSPO's paper (section 5.1): ε = 3e-4 / 4e-4 for the sequence ratio, 0.2 / 0.27 for GRPO.
_GSPO_CLIP = {"clip_low": 3e-4, "clip_high": 4e-4}
_GRPO_CLIP = {"clip_low": 0.2, "clip_high": 0.27}
_PPO_CLIP = {"clip_low": 0.2, "clip_high": 0.2}
_DAPO_SETTINGS = {"aggregation": "token-mean", "dynamic_sampling": True, "overlong_buffer_frac": 0.2}
for _entry in (
    Algorithm("gspo", "sequence", "GSPO (eq. 5-7): one sequence ratio, whole responses clipped", defaults=_GSPO_CLIP),
    Algorithm("gspo-token", "sequence_token", "GSPO-token (eq. 13-14): per-token advantages", defaults=_GSPO_CLIP),
    Algorithm("grpo", "token", "GRPO, the paper's baseline: token ratios clipped one by one", defaults=_GRPO_CLIP),
    Algorithm(
        "dapo",
        "token",
        "DAPO: clip-higher (0.2 / 0.28), token-mean, dynamic sampling, soft overlong punishment",
        defaults={"clip_low": 0.2, "clip_high": 0.28},
        settings=_DAPO_SETTINGS,
    ),
    Algorithm(
        "dr-grpo",
        "token",
        "Dr. GRPO: GRPO without std scaling, constant normaliser (G · max_new_tokens)",
        defaults=_PPO_CLIP,
        settings={"aggregation": "seq-mean-token-sum-norm", "advantage_scale": "none"},
    ),
    Algorithm(
        "cispo",
        "cispo",
        "CISPO (MiniMax-M1): truncated, detached importance weight times log π; no token dropped",
        defaults={"clip_low": 1.0, "clip_high": 0.28},
        settings={"aggregation": "token-mean"},
    ),
    Algorithm(
        "gmpo",
        "gmpo",
        "GMPO: geometric mean of token ratios, clipped per token in log space (±0.4)",
        defaults={"clip_low": 0.4, "clip_high": 0.4},
    ),
    Algorithm(
        "sapo",
        "sapo",
        "SAPO: sigmoid soft gate in place of the hard clip (τ_pos 1.0, τ_neg 1.05)",
        defaults={"tau_pos": 1.0, "tau_neg": 1.05},
    ),
    Algorithm(
        "rloo",
        "token",
        "RLOO: leave-one-out baseline G/(G-1)·(r - mean), REINFORCE on the sequence (token-sum)",
        advantage="rloo",
        defaults=_PPO_CLIP,
        settings={"aggregation": "seq-mean-token-sum"},
    ),
    Algorithm(
        "reinforce++",
        "token",
        "REINFORCE++: no group baseline, returns whitened over the whole batch's tokens",
        advantage="reinforce++",
        defaults=_PPO_CLIP,
        settings={"aggregation": "token-mean"},
    ),
    Algorithm(
        "ppo",
        "token",
        "PPO: a learned critic (value model), GAE on token rewards, whitened; token ratios clipped at 0.2",
        advantage="gae",
        defaults=_PPO_CLIP,
        needs=frozenset({"old_logp", "critic"}),
        settings={"aggregation": "token-mean"},
    ),
    Algorithm(
        "dpo",
        "dpo",
        "online DPO: the best and worst response of each group as a pair, sigmoid loss against the starting policy",
        defaults={"beta": 0.1},
        needs=frozenset({"reference", "pairs"}),
    ),
):
    register_algorithm(_entry)
