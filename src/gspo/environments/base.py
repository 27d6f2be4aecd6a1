"""The environment interface: what a multi-turn or tool-use episode asks of the code it talks to.

An :class:`Environment` turns a data row into an episode and answers each of the model's turns:

- ``reset(episode) -> messages``: the first messages of the episode (chat messages, ``{"role": ...,
  "content": ...}``), from ``episode.row``. Per-episode state goes in ``episode.state`` (a dict);
- ``step(episode, reply) -> Turn``: the model's turn (its text, decoded from the sampled tokens) in,
  the environment's answer out: messages to append (tool results with role ``"tool"``, feedback with
  role ``"user"``), ``done``, and optionally a ``reward`` for that turn and whether the turn called a
  tool (``tool_call``) and the call failed (``tool_error``), which are counted in the metrics;
- ``reward(episode) -> float``: the final reward, once the episode is over (by ``done``, or by a
  limit: ``episode.truncated`` then says which);
- ``solved(episode) -> bool``: what evaluation counts as a success (default: final reward >= 1).

Optional: ``step_many(episodes, replies)`` answers several episodes at once (the default calls
``step`` for each; the Python tool overrides it to run the sandbox in parallel) and
``rows(split, limit)``, the environment's own data, for environments that need no task (the guessing
game); an environment without it gets the rows of the configured task, and the task object as
``self.task`` (so that it can score a final answer with the task's own verifier).

The design follows the two ecosystems a user may come from: ``verifiers``' multi-turn environments
(``env_response(messages, state)``, ``is_completed``, a rubric on the finished rollout) and OpenEnv's
``reset() / step(action) -> observation(reward, done)``. Here both halves meet in one small class;
the trainer owns tokens (the model's sampled ids are kept; the environment's messages are tokenized
once and appended) and the environment only ever sees and returns text.

Plug-in: ``--environment package.module:Class`` (or a registered name: ``python``, ``guess``), its
keyword arguments from ``environment_options``. :func:`load_environment` reports a bad path or
options naming the spec; :func:`checked_turn` and friends turn a wrong return type into an
:class:`EnvironmentError` naming the environment and the method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gspo.plugins import import_dotted

Message = dict[str, Any]

__all__ = [
    "ENVIRONMENT_REGISTRY",
    "Environment",
    "EnvironmentError",
    "Episode",
    "Message",
    "Turn",
    "checked_messages",
    "checked_reward",
    "checked_turn",
    "import_target",
    "load_environment",
    "register_environment",
]


class EnvironmentError(RuntimeError):  # noqa: A001 - gspo's own, always imported by module
    """An environment raised, hung or returned the wrong type; the message names it and the method."""


@dataclass
class Turn:
    """The environment's answer to one model turn."""

    messages: list[Message] = field(default_factory=list)
    """Messages appended to the conversation (role 'tool' for tool results, 'user' for feedback)."""
    done: bool = False
    """The episode is over (the final reward is asked next)."""
    reward: float | None = None
    """A reward for this turn (optional; the episode's return adds the final reward)."""
    tool_call: bool = False
    """This turn called a tool (counted: tool_calls, episodes with a tool call)."""
    tool_error: bool = False
    """... and the call failed (an exception, a timeout): counted as tool_errors."""


@dataclass
class Episode:
    """One episode: its row, the conversation so far, the environment's state and what happened."""

    row: dict[str, Any]
    index: int = 0  # its place in the round that played it (row i*G+j: row i, episode j)
    messages: list[Message] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # the environment's own
    replies: list[str] = field(default_factory=list)  # the model's turns as text
    turn_rewards: list[float] = field(default_factory=list)  # one per model turn (0 where none was given)
    turn_tokens: list[int] = field(default_factory=list)  # model tokens per turn
    tool_calls: int = 0
    tool_errors: int = 0
    done: bool = False  # ended by the environment
    truncated: str | None = None  # ended by a limit: 'turns', 'tokens', or 'error' (the environment failed)
    final_reward: float = 0.0
    error: str | None = None  # what went wrong, when the environment failed and the run goes on

    @property
    def turns(self) -> int:
        """Model turns taken."""
        return len(self.replies)

    @property
    def has_turn_rewards(self) -> bool:
        return any(r != 0.0 for r in self.turn_rewards)

    @property
    def total_reward(self) -> float:
        """The episode's return: the final reward plus every per-turn reward."""
        return self.final_reward + sum(self.turn_rewards)

    @property
    def last_reply(self) -> str:
        return self.replies[-1] if self.replies else ""


class Environment:
    """Base class of environments (see the module docstring). Subclasses implement ``reset``,
    ``step`` and ``reward``; ``name`` names them in errors and metrics."""

    name: str = "environment"
    #: The task whose rows this environment is given (set by the trainer; None with ``rows``).
    task: Any = None

    def reset(self, episode: Episode) -> list[Message]:
        raise NotImplementedError(f"environment {self.name!r} does not implement reset")

    def step(self, episode: Episode, reply: str) -> Turn:
        raise NotImplementedError(f"environment {self.name!r} does not implement step")

    def step_many(self, episodes: Sequence[Episode], replies: Sequence[str]) -> list[Turn]:
        """Answer several episodes at once (default: ``step`` one by one)."""
        return [self.step(e, r) for e, r in zip(episodes, replies)]

    def reward(self, episode: Episode) -> float:
        raise NotImplementedError(f"environment {self.name!r} does not implement reward")

    def solved(self, episode: Episode) -> bool:
        """Success for evaluation (default: the final reward reaches 1)."""
        return episode.final_reward >= 1.0

    def close(self, episode: Episode) -> None:
        """Release what the episode holds (a process, a connection): called once when it is over, after
        ``reward``, also for an episode ended by a failure (default: nothing). ``solved`` (evaluation) is
        asked afterwards, so it must read the episode, not what ``close`` released."""

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]] | None:
        """The environment's own rows, or None to take the configured task's."""
        return None


# ---------------------------------------------------------------------------------------------- checks
def checked_messages(env_name: str, method: str, value: Any) -> list[Message]:
    """``value`` as a list of ``{"role": str, "content": str}``; EnvironmentError naming env and method."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise EnvironmentError(
            f"environment {env_name!r}: {method} returned {type(value).__name__}, expected a list of messages"
        )
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise EnvironmentError(
                f"environment {env_name!r}: {method} message {i} must be a dict with string 'role' and 'content', "
                f"got {m!r:.120}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def checked_reward(env_name: str, method: str, value: Any) -> float:
    """A finite float; EnvironmentError naming env and method otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EnvironmentError(
            f"environment {env_name!r}: {method} returned {type(value).__name__} {value!r:.60}, expected a number"
        ) from None
    if isinstance(value, bool) or not math.isfinite(number):
        if isinstance(value, bool):
            return float(value)
        raise EnvironmentError(f"environment {env_name!r}: {method} returned a non-finite reward {number}")
    return number


def checked_turn(env_name: str, value: Any) -> Turn:
    """A :class:`Turn` (a ``(messages, done)`` or ``(messages, done, reward)`` tuple is accepted too)."""
    if isinstance(value, tuple) and len(value) in (2, 3):
        value = Turn(value[0], bool(value[1]), value[2] if len(value) == 3 else None)
    if not isinstance(value, Turn):
        raise EnvironmentError(
            f"environment {env_name!r}: step returned {type(value).__name__}, expected gspo.environments.Turn"
        )
    if not isinstance(value.done, bool):
        raise EnvironmentError(f"environment {env_name!r}: step returned done={value.done!r}, expected a bool")
    reward = None if value.reward is None else checked_reward(env_name, "step (the turn's reward)", value.reward)
    messages = checked_messages(env_name, "step", value.messages)
    return Turn(messages, value.done, reward, bool(value.tool_call), bool(value.tool_error))


# ---------------------------------------------------------------------------------------------- loading
ENVIRONMENT_REGISTRY: dict[str, str | Callable[..., Environment]] = {
    "python": "gspo.environments.python_tool:PythonToolEnv",
    "guess": "gspo.environments.guessing:GuessNumberEnv",
    "openenv": "gspo.environments.openenv:OpenEnvAdapter",
}


def register_environment(name: str, target: str | Callable[..., Environment]) -> None:
    """Add a named environment: a class (or factory) or its ``'module:Class'`` path."""
    ENVIRONMENT_REGISTRY[name] = target


def import_target(spec: str) -> Any:
    """The object at ``'package.module:Name'`` (or ``package.module.Name``); ValueError naming the spec."""
    return import_dotted(
        spec,
        "environment",
        f"environment {spec!r}: not a registered name {sorted(ENVIRONMENT_REGISTRY)} nor a 'package.module:Class' path",
    )


def load_environment(spec: str | Environment, options: dict[str, Any] | None = None) -> Environment:
    """The environment for a registered name or dotted path, built with ``options`` as keyword arguments.

    ValueError naming the spec for a bad path, a target that is not callable, options it refuses, or
    a result that is not an :class:`Environment` (any object with ``reset``, ``step`` and ``reward``).
    """
    if not isinstance(spec, str):
        env = spec
    else:
        entry = ENVIRONMENT_REGISTRY.get(spec.strip(), spec.strip())
        target = import_target(entry) if isinstance(entry, str) else entry
        if not callable(target):
            raise ValueError(f"environment {spec!r}: {type(target).__name__} is not a class or factory")
        try:
            env = target(**(options or {}))
        except TypeError as exc:
            raise ValueError(f"environment {spec!r}: environment_options {options or {}} refused ({exc})") from exc
    missing = [m for m in ("reset", "step", "reward") if not callable(getattr(env, m, None))]
    if missing:
        raise ValueError(
            f"environment {spec!r}: {type(env).__name__} has no {missing} (see gspo.environments.Environment)"
        )
    if not isinstance(getattr(env, "name", None), str):
        env.name = spec if isinstance(spec, str) else type(env).__name__
    return env
