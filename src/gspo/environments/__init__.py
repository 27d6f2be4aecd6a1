"""Environments for multi-turn and tool-use training (``gspo train --environment ...``).

- :mod:`gspo.environments.base`: the interface (:class:`Environment`, :class:`Episode`, :class:`Turn`),
  loading by name or ``package.module:Class`` (:func:`load_environment`);
- :mod:`gspo.environments.python_tool`: ``python``, a Python tool run in the sandbox;
- :mod:`gspo.environments.guessing`: ``guess``, a number-guessing game with higher/lower replies;
- :mod:`gspo.environments.formatting`: how the environment's messages become tokens (chat template
  with a tool role where the template has one, a tagged format otherwise);
- :mod:`gspo.environments.guard`: deadlines, type checks and the failure policy;
- :mod:`gspo.environments.openenv`: an adapter for environments written for OpenEnv.

See docs/environments.md.
"""

from gspo.environments.base import (
    ENVIRONMENT_REGISTRY,
    Environment,
    EnvironmentError,
    Episode,
    Message,
    Turn,
    load_environment,
    register_environment,
)

__all__ = [
    "ENVIRONMENT_REGISTRY",
    "Environment",
    "EnvironmentError",
    "Episode",
    "Message",
    "Turn",
    "load_environment",
    "register_environment",
]
