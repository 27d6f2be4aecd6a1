"""``openenv``: run an environment written for OpenEnv (Meta's ``openenv-core``) as a gspo environment.

OpenEnv's server-side API (``openenv.core.env_server.interfaces.Environment``, as of openenv-core 0.3)
is Gym-like and one instance is one episode:

    env.reset(seed=None, episode_id=None, **kw) -> Observation      (pydantic: done, reward, metadata, ...)
    env.step(action: Action, timeout_s=None, **kw) -> Observation
    env.state -> State;  env.close()

The adapter makes one instance per gspo episode (``env``: the class or a factory, by dotted path,
built with ``env_options``), turns the model's reply into the environment's Action (the class that
``step`` is annotated with, or ``action``; the reply goes in the field ``action_field``), and the
observations into messages: ``observation_field`` names the field to show, or, when None, every field
but ``done``, ``reward`` and ``metadata`` is shown as ``name: value`` lines. Each observation's
``reward`` is the turn's reward (OpenEnv rewards come per step); ``done`` ends the episode. The final
reward is 0, so the episode's return is the sum of its step rewards; ``solved`` is a return of at
least ``solved_at``.

Rows: the adapter has its own, one per seed (``{"seed": s, "id": ...}``; train seeds 0.., test seeds
from 1,000,000), handed to ``reset(seed=..., episode_id=...)`` where ``reset`` takes them.

Nothing here imports ``openenv``: the adapter uses only the methods above, so it runs environments
written against OpenEnv's classes in the same process (the HTTP / Docker client side of OpenEnv is
not used). The package's own install pulls in a web stack (FastAPI, Gradio, FastMCP) that training
does not need; install ``openenv-core`` yourself to write environments against its classes.

    gspo train --environment openenv --environment-options '{"env": "my_pkg.server:EchoEnvironment"}'
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from gspo.environments.base import Environment, Episode, Turn, import_target

_HIDDEN_FIELDS = ("done", "reward", "metadata")


def _fields(observation: Any) -> dict[str, Any]:
    if hasattr(observation, "model_dump"):
        return dict(observation.model_dump())
    return dict(vars(observation))


def _accepts(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class OpenEnvAdapter(Environment):
    """See the module docstring."""

    name = "openenv"

    def __init__(
        self,
        env: str | Any,
        env_options: dict[str, Any] | None = None,
        action: str | Any | None = None,
        action_field: str = "message",
        observation_field: str | None = None,
        role: str = "user",
        instruction: str = "",
        solved_at: float = 1.0,
        train_rows: int = 1000,
        test_rows: int = 100,
    ):
        self.factory = import_target(env) if isinstance(env, str) else env
        if not callable(self.factory):
            raise ValueError(f"env: {env!r} is not a class or factory")
        self.env_options = dict(env_options or {})
        self.action_cls = import_target(action) if isinstance(action, str) else action
        self.action_field, self.observation_field = action_field, observation_field
        self.role, self.instruction, self.solved_at = role, instruction, float(solved_at)
        self.sizes = {"train": int(train_rows), "test": int(test_rows)}
        self.name = f"openenv:{getattr(self.factory, '__name__', type(self.factory).__name__)}"

    # ------------------------------------------------------------------ rows
    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in self.sizes:
            raise ValueError(f"environment 'openenv': split must be one of {list(self.sizes)}, got {split!r}")
        base = 0 if split == "train" else 1_000_000
        n = self.sizes[split] if limit is None else min(limit, self.sizes[split])
        return [{"prompt": "", "seed": base + i, "id": f"openenv/{split}/{i}"} for i in range(n)]

    # ------------------------------------------------------------------ text <-> OpenEnv types
    def render(self, observation: Any) -> str:
        """An observation as message text (``observation_field``, or the visible fields as lines)."""
        fields = _fields(observation)
        if self.observation_field is not None:
            return str(fields.get(self.observation_field, ""))
        shown = {k: v for k, v in fields.items() if k not in _HIDDEN_FIELDS}
        if len(shown) == 1:
            return str(next(iter(shown.values())))
        return "\n".join(f"{k}: {v}" for k, v in shown.items())

    def make_action(self, instance: Any, reply: str) -> Any:
        cls = self.action_cls
        if cls is None:
            hints = typing.get_type_hints(type(instance).step)
            cls = hints.get("action")
            if cls is None or not callable(cls):
                raise TypeError(f"{type(instance).__name__}.step has no Action annotation; pass action=")
        return cls(**{self.action_field: reply})

    # ------------------------------------------------------------------ the gspo interface
    def reset(self, episode: Episode) -> list[dict[str, Any]]:
        instance = self.factory(**self.env_options)
        episode.state["env"] = instance
        kwargs = {}
        for key, value in (("seed", episode.row.get("seed")), ("episode_id", str(episode.row.get("id", "")))):
            if _accepts(instance.reset, key):
                kwargs[key] = value
        text = self.render(instance.reset(**kwargs))
        return [{"role": "user", "content": f"{self.instruction}\n\n{text}".strip() if self.instruction else text}]

    def step(self, episode: Episode, reply: str) -> Turn:
        instance = episode.state["env"]
        observation = instance.step(self.make_action(instance, reply))
        reward = getattr(observation, "reward", None)
        done = bool(getattr(observation, "done", False))
        return Turn([{"role": self.role, "content": self.render(observation)}], done=done,
                    reward=None if reward is None else float(reward))  # fmt: skip

    def reward(self, episode: Episode) -> float:
        return 0.0

    def close(self, episode: Episode) -> None:
        """The OpenEnv instance's ``close()``: after the reward, and for an episode ended by a failure."""
        instance = episode.state.pop("env", None)
        if instance is not None and callable(getattr(instance, "close", None)):
            instance.close()

    def solved(self, episode: Episode) -> bool:
        return episode.total_reward >= self.solved_at
