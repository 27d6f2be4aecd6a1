"""Named reward functions, and loading any reward function by its dotted path.

Every reward follows TRL's convention ``f(prompts, completions, **columns) -> list[float | None]``.
Built-in names (see :data:`REWARD_REGISTRY`):

============================  ==============================================================
``math``                      final answer equal by value / symbolically (``answer`` column)
``choice``                    multiple-choice letter or text (``answer``, optional ``choices``)
``code``                      program passes ``tests`` in the sandbox (``code_prefix``, ``entry_point``)
``format_boxed``              answer in ``\\boxed{...}``
``format_hash``               a ``#### N`` line
``format_answer_line``        an ``Answer: X`` line
``format_final_answer``       any of the three answer forms above
``format_code_block``         code in a ```` ```python ```` block
============================  ==============================================================

:func:`resolve_reward` takes a registered name, a dotted path ``"package.module:function"`` (or
``"package.module.function"``), or a callable, and returns the function; bad names and paths raise
``ValueError`` saying what was wrong (unknown name with the valid ones, module not importable, no such
attribute, not callable). Names map to ``module:function`` strings and import lazily, so that the code
reward's sandbox is only imported when it is used. :func:`register_reward` adds a name.
"""

from __future__ import annotations

from collections.abc import Callable

from gspo.plugins import import_dotted, split_dotted

RewardFunction = Callable[..., list]

REWARD_REGISTRY: dict[str, str | RewardFunction] = {
    "math": "gspo.rewards.math:math_reward",
    "choice": "gspo.rewards.choice:choice_reward",
    "code": "gspo.rewards.code:code_reward",
    "format_boxed": "gspo.rewards.format:format_boxed_reward",
    "format_hash": "gspo.rewards.format:format_hash_reward",
    "format_answer_line": "gspo.rewards.format:format_answer_line_reward",
    "format_final_answer": "gspo.rewards.format:format_final_answer_reward",
    "format_code_block": "gspo.rewards.format:format_code_block_reward",
}


def load_reward(path: str) -> RewardFunction:
    """The function at ``"package.module:function"`` (or ``"package.module.function"``).

    Raises ValueError naming the problem: a malformed path, a module that cannot be imported, a
    missing attribute, or an attribute that is not callable.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"reward path must be a non-empty 'module:function' string, got {path!r}")
    path = path.strip()
    target = import_dotted(path, "reward", f"reward path {path!r} must look like 'package.module:function'")
    if not callable(target):
        attr = split_dotted(path)[1]
        raise ValueError(f"reward {path!r}: {attr!r} is a {type(target).__name__}, not a function")
    return target


def get_reward(name: str) -> RewardFunction:
    """The reward registered as ``name``; unknown names list the valid ones."""
    if name not in REWARD_REGISTRY:
        raise ValueError(
            f"unknown reward {name!r}; valid rewards: {sorted(REWARD_REGISTRY)} or a 'module:function' path"
        )
    entry = REWARD_REGISTRY[name]
    return load_reward(entry) if isinstance(entry, str) else entry


def resolve_reward(spec: str | RewardFunction) -> RewardFunction:
    """A reward from a callable, a registered name, or a ``module:function`` path."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"reward must be a registered name, a 'module:function' path or a callable, got {spec!r}")
    spec = spec.strip()
    if spec in REWARD_REGISTRY:
        return get_reward(spec)
    if ":" in spec or "." in spec:
        return load_reward(spec)
    raise ValueError(f"unknown reward {spec!r}; valid rewards: {sorted(REWARD_REGISTRY)} or a 'module:function' path")


def register_reward(name: str, fn: str | RewardFunction, *, overwrite: bool = False) -> None:
    """Register ``fn`` (a callable or a ``module:function`` string) under ``name``."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"reward name must be a non-empty string without ':', got {name!r}")
    if name in REWARD_REGISTRY and not overwrite:
        raise ValueError(f"reward {name!r} is already registered (pass overwrite=True to replace it)")
    if not (callable(fn) or isinstance(fn, str)):
        raise ValueError(f"reward {name!r}: expected a callable or a 'module:function' string, got {fn!r}")
    REWARD_REGISTRY[name] = fn


def available_rewards() -> list[str]:
    """The registered reward names, sorted."""
    return sorted(REWARD_REGISTRY)


__all__ = ["REWARD_REGISTRY", "available_rewards", "get_reward", "load_reward", "register_reward", "resolve_reward"]
