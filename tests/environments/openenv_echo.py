"""A small environment written against OpenEnv's server API (openenv-core 0.3: Environment, Action,
Observation, State), for the adapter test: count down from a seeded number, one reply per step.

With ``openenv`` importable the classes are OpenEnv's own; otherwise (its install pulls a web stack the
test suite does not carry) a stand-in with the same names, fields and signatures, pydantic models as
in OpenEnv, so that the environment below is the same code either way."""

from __future__ import annotations

from typing import Any, Optional

try:  # pragma: no cover - depends on what is installed
    from openenv.core.env_server.interfaces import Environment
    from openenv.core.env_server.types import Action, Observation, State
except ImportError:  # the stand-in: openenv-core 0.3.0's classes, reduced to their public surface
    from abc import ABC, abstractmethod

    from pydantic import BaseModel, ConfigDict, Field

    class Action(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)
        metadata: dict[str, Any] = Field(default_factory=dict)

    class Observation(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)
        done: bool = False
        reward: bool | int | float | None = None
        metadata: dict[str, Any] = Field(default_factory=dict)

    class State(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="allow", validate_assignment=True, arbitrary_types_allowed=True)
        episode_id: Optional[str] = None
        step_count: int = 0

    class Environment(ABC):  # type: ignore[no-redef]
        SUPPORTS_CONCURRENT_SESSIONS: bool = False

        def __init__(self, transform=None, rubric=None):
            self.transform, self.rubric = transform, rubric

        @abstractmethod
        def reset(self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any): ...

        @abstractmethod
        def step(self, action, timeout_s: Optional[float] = None, **kwargs: Any): ...

        @property
        @abstractmethod
        def state(self): ...

        def close(self) -> None:  # noqa: B027 - OpenEnv's own is an empty hook too
            pass


class CountdownAction(Action):
    message: str


class CountdownObservation(Observation):
    prompt: str


class CountdownEnvironment(Environment):
    """Say the next number down from the seeded start; reward 1 per right number, done at 0 or a miss."""

    SUPPORTS_CONCURRENT_SESSIONS = True
    closed = 0

    def __init__(self, start_max: int = 3):
        super().__init__()
        self.start_max = start_max
        self._state = State(step_count=0)
        self.current = 0

    def reset(
        self, seed: Optional[int] = None, episode_id: Optional[str] = None, **kwargs: Any
    ) -> CountdownObservation:
        self._state = State(episode_id=episode_id, step_count=0)
        self.current = 1 + (seed or 0) % self.start_max
        return CountdownObservation(prompt=f"Count down from {self.current}. Next?", reward=0.0)

    def step(self, action: CountdownAction, timeout_s: Optional[float] = None, **kwargs: Any) -> CountdownObservation:
        self._state.step_count += 1
        right = action.message.strip() == str(self.current - 1)
        self.current -= 1
        done = not right or self.current == 0
        return CountdownObservation(prompt="Right. Next?" if right else "Wrong.", reward=float(right), done=done)

    @property
    def state(self) -> State:
        return self._state

    def close(self) -> None:
        type(self).closed += 1
