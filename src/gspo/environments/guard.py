"""Calling an environment safely: a deadline on every call, wrong types named, failures defined.

:class:`GuardedEnvironment` wraps an environment for the episode runner. Every call (``reset``,
``step_many``, ``reward``) runs in a worker thread with a deadline (``timeout_s``); its result is
checked (:func:`gspo.environments.base.checked_turn` and friends). What happens on a failure (the
environment raised, hung past the deadline, or returned the wrong type) is ``on_error``:

- ``"raise"`` (default): :class:`EnvironmentError` naming the environment, the method and the cause;
- ``"end"``: the episodes concerned end at once (``episode.truncated = "error"``, final reward 0,
  turn rewards already earned kept, ``episode.error`` says why), a warning is logged, and the failures
  are counted in the metrics (``episodes/env_errors``); the step goes on with the other episodes.

Environments whose ``step_many`` is the base class's are called one episode at a time, so a failure
concerns one episode; a batched ``step_many`` of the environment's own gets ``timeout_s`` × its number
of episodes, and if it raises or hangs every episode of that call ends (see :meth:`step_many`).

A call past its deadline cannot be stopped from Python: its thread is abandoned (a daemon thread, so it
does not keep the process alive) and the environment is not called again for that episode.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from gspo.environments.base import (
    Environment,
    EnvironmentError,
    Episode,
    Message,
    Turn,
    checked_messages,
    checked_reward,
    checked_turn,
)

logger = logging.getLogger("gspo")

ON_ERROR = ("raise", "end")


def call_with_deadline(fn: Callable[[], Any], timeout_s: float | None, what: str) -> Any:
    """``fn()`` in a daemon thread; EnvironmentError ``what`` when it raises or passes the deadline."""
    if not timeout_s:
        try:
            return fn()
        except EnvironmentError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: named and re-raised
            raise EnvironmentError(f"{what} raised {type(exc).__name__}: {exc}") from exc
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - carried to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="gspo-environment", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise EnvironmentError(f"{what} did not return within {timeout_s:g} s (environment_timeout_s)")
    if "error" in box:
        failure = box["error"]
        if isinstance(failure, EnvironmentError):
            raise failure
        raise EnvironmentError(f"{what} raised {type(failure).__name__}: {failure}") from failure
    return box["value"]


class GuardedEnvironment:
    """An environment behind deadlines, type checks and the ``on_error`` policy (module docstring)."""

    def __init__(self, env: Environment, *, timeout_s: float | None = 60.0, on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ValueError(f"environment_errors: must be one of {list(ON_ERROR)}, got {on_error!r}")
        self.env, self.timeout_s, self.on_error = env, timeout_s, on_error
        self.name = str(getattr(env, "name", type(env).__name__))
        self.errors = 0  # failures handled under on_error='end' (since the last take_errors)

    def take_errors(self) -> int:
        n, self.errors = self.errors, 0
        return n

    def _fail(self, episodes: Sequence[Episode], exc: EnvironmentError) -> None:
        if self.on_error == "raise":
            raise exc
        logger.warning("%s; %d episode(s) end here (environment_errors=end)", exc, len(episodes))
        self.errors += len(episodes)
        for e in episodes:
            e.truncated, e.error, e.final_reward = "error", str(exc), 0.0

    def reset(self, episode: Episode) -> list[Message] | None:
        what = f"environment {self.name!r}: reset"
        try:
            value = call_with_deadline(lambda: self.env.reset(episode), self.timeout_s, what)
            messages = checked_messages(self.name, "reset", value)
            if not messages:
                raise EnvironmentError(f"{what} returned no messages: an episode starts from at least one")
            return messages
        except EnvironmentError as exc:
            self._fail([episode], exc)
            return None

    def step_many(self, episodes: Sequence[Episode], replies: Sequence[str]) -> list[Turn | None]:
        """One checked Turn per episode; None for the episodes that ended on a failure.

        An environment whose ``step_many`` is the base class's (one ``step`` after another) is called one
        episode at a time, each call under its own deadline, so a failure ends only its episode. An
        environment with its own batched ``step_many`` gets one deadline of ``timeout_s`` × the number
        of episodes; if that call raises or hangs, every episode of the call ends (it cannot say which
        one failed), while a wrong-typed element ends only its episode.
        """
        what = f"environment {self.name!r}: step"
        step_many = getattr(self.env, "step_many", None)
        if step_many is None or getattr(type(self.env), "step_many", None) is Environment.step_many:
            return [self._step_one(e, r, what) for e, r in zip(episodes, replies)]
        deadline = self.timeout_s * max(len(episodes), 1) if self.timeout_s else None
        try:
            value = call_with_deadline(lambda: step_many(list(episodes), list(replies)), deadline, what)
            if not isinstance(value, (list, tuple)) or len(value) != len(episodes):
                raise EnvironmentError(
                    f"{what}_many returned {type(value).__name__} of length {len(value) if hasattr(value, '__len__') else '?'}"
                    f" for {len(episodes)} episodes"
                )
        except EnvironmentError as exc:
            self._fail(episodes, exc)
            return [None] * len(episodes)
        return [self._checked(e, v) for e, v in zip(episodes, value)]

    def _checked(self, episode: Episode, value: Any) -> Turn | None:
        try:
            return checked_turn(self.name, value)
        except EnvironmentError as exc:
            self._fail([episode], exc)
            return None

    def _step_one(self, episode: Episode, reply: str, what: str) -> Turn | None:
        try:
            value = call_with_deadline(lambda: self.env.step(episode, reply), self.timeout_s, what)
        except EnvironmentError as exc:
            self._fail([episode], exc)
            return None
        return self._checked(episode, value)

    def formatted(self, episode: Episode, encode: Callable[[], list[int]]) -> list[int] | None:
        """``encode()`` (the episode's messages through the tokenizer's chat template); a failure there
        (a template that refuses the messages, say) is this environment's, under ``on_error``: None."""
        try:
            return encode()
        except Exception as exc:  # noqa: BLE001 - template / tokenizer errors on the environment's messages
            failure = EnvironmentError(
                f"environment {self.name!r}: its messages cannot be formatted for the model "
                f"({type(exc).__name__}: {exc})"
            )
            self._fail([episode], failure)
            return None

    def reward(self, episode: Episode) -> float:
        if episode.truncated == "error":
            return 0.0
        what = f"environment {self.name!r}: reward"
        try:
            value = call_with_deadline(lambda: self.env.reward(episode), self.timeout_s, what)
            return checked_reward(self.name, "reward", value)
        except EnvironmentError as exc:
            self._fail([episode], exc)
            return 0.0

    def close(self, episode: Episode) -> None:
        """The environment's ``close`` (if any), best effort: a failure there is logged, never raised."""
        close = getattr(self.env, "close", None)
        if close is None:
            return
        try:
            call_with_deadline(lambda: close(episode), self.timeout_s, f"environment {self.name!r}: close")
        except EnvironmentError as exc:
            logger.warning("%s (ignored: the episode is over)", exc)

    def solved(self, episode: Episode) -> bool:
        if episode.truncated == "error":
            return False
        solved = getattr(self.env, "solved", None)
        if solved is None:
            return episode.final_reward >= 1.0
        try:
            return bool(
                call_with_deadline(lambda: solved(episode), self.timeout_s, f"environment {self.name!r}: solved")
            )
        except EnvironmentError as exc:
            self._fail([episode], exc)
            return False
