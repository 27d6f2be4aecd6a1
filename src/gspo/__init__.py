"""gspo: Group Sequence Policy Optimization for Hugging Face causal language models.

The names a user needs, as TRL users write ``from trl import GRPOTrainer``::

    from gspo import GSPOTrainer, GSPOConfig

also ``SFTTrainer`` / ``SFTConfig`` (supervised baseline), ``DPOTrainer`` / ``DPOConfig`` (offline DPO),
``Algorithm`` / ``register_algorithm`` / ``register_loss`` / ``register_pair_loss`` /
``register_advantage`` (a new algorithm), ``Task`` / ``register_task`` (a new
task) and ``register_reward`` (a new reward). They are imported on first use, so ``import gspo``
(and ``gspo --help``) stays light.

Package layout (each folder is one layer of the system):

- ``gspo.algorithms`` the algorithm table: loss, advantage estimator, hyper-parameters, needs (torch-free).
- ``gspo.losses``     the algorithm core: pure tensor functions (policy losses, advantage estimators,
                      KL, chunked log-probs). No model, no config object.
- ``gspo.sampling``   the two forward passes: batched generation with a KV cache (``generate``) and
                      the scoring pass that gives the trainer its log-probs (``scoring``).
- ``gspo.rewards``    reward functions (math by value, code in a sandbox, multiple choice, format).
- ``gspo.tasks``      datasets + prompt formats + the task's own scorer (reused as its reward).
- ``gspo.trainer``    the RL loop, typed step data, PPO's critic, online DPO's pairs, SFT and offline DPO,
                      checkpoints, metrics, plots.
- ``gspo.evaluation`` ``gspo eval``: accuracy and pass@k per task.
- ``gspo.models``     model loading and preparation (embedded tiny model, SmolLM2 from GGUF), devices.
- ``gspo.config``     dataclass configs (``RunConfig`` shared by RL and SFT), YAML, overrides, validation.
- ``gspo.experiments`` ``gspo compare``: matched runs of several algorithms and their report.
- ``gspo.cli``        the ``gspo`` command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "GSPOTrainer": "gspo.trainer.trainer",
    "GSPOConfig": "gspo.config.train",
    "SFTTrainer": "gspo.trainer.sft",
    "SFTConfig": "gspo.trainer.sft",
    "DPOTrainer": "gspo.trainer.dpo",
    "DPOConfig": "gspo.trainer.dpo",
    "Algorithm": "gspo.algorithms",
    "register_algorithm": "gspo.algorithms",
    "register_loss": "gspo.losses.policy",
    "register_pair_loss": "gspo.losses.dpo",
    "register_advantage": "gspo.losses.advantages",
    "Task": "gspo.tasks.base",
    "register_task": "gspo.tasks",
    "register_reward": "gspo.rewards.registry",
}

__all__ = [
    "Algorithm",
    "DPOConfig",
    "DPOTrainer",
    "GSPOConfig",
    "GSPOTrainer",
    "SFTConfig",
    "SFTTrainer",
    "Task",
    "register_advantage",
    "register_algorithm",
    "register_loss",
    "register_pair_loss",
    "register_reward",
    "register_task",
]

if TYPE_CHECKING:
    from gspo.algorithms import Algorithm, register_algorithm
    from gspo.config.train import GSPOConfig
    from gspo.losses.advantages import register_advantage
    from gspo.losses.dpo import register_pair_loss
    from gspo.losses.policy import register_loss
    from gspo.rewards.registry import register_reward
    from gspo.tasks import register_task
    from gspo.tasks.base import Task
    from gspo.trainer.dpo import DPOConfig, DPOTrainer
    from gspo.trainer.sft import SFTConfig, SFTTrainer
    from gspo.trainer.trainer import GSPOTrainer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gspo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
