"""GuardedEnvironment: a failure ends only the episodes it concerns; deadlines; an empty reset is named."""

from __future__ import annotations

import time

import pytest

from gspo.environments import Episode, Turn
from gspo.environments.base import Environment, EnvironmentError
from gspo.environments.guard import GuardedEnvironment


class OneBadStep(Environment):
    """``step`` raises for the episode whose reply is 'boom'; the base class's step_many."""

    name = "one-bad"

    def reset(self, episode):
        return [{"role": "user", "content": "go"}]

    def step(self, episode, reply):
        if reply == "boom":
            raise RuntimeError("bad reply")
        return Turn([{"role": "user", "content": "ok"}], done=True, reward=1.0)

    def reward(self, episode):
        return 1.0


class BatchedWithOneWrongType(OneBadStep):
    """Its own batched step_many: a wrong type for the second episode only."""

    def step_many(self, episodes, replies):
        return [Turn(done=True), "not a turn", Turn(done=True)]


class SlowBatch(OneBadStep):
    def step_many(self, episodes, replies):
        time.sleep(0.3)  # 0.1 s per episode: within a per-episode deadline of 0.2 s × 3 episodes
        return [Turn(done=True) for _ in episodes]


def _episodes(n):
    return [Episode(row={}, index=i) for i in range(n)]


def test_a_failing_step_ends_only_its_episode_under_end():
    guard = GuardedEnvironment(OneBadStep(), timeout_s=5, on_error="end")
    episodes = _episodes(4)
    turns = guard.step_many(episodes, ["a", "boom", "b", "c"])
    assert [t is None for t in turns] == [False, True, False, False]
    assert [e.truncated for e in episodes] == [None, "error", None, None]
    assert guard.take_errors() == 1
    with pytest.raises(EnvironmentError, match="environment 'one-bad': step raised RuntimeError: bad reply"):
        GuardedEnvironment(OneBadStep(), timeout_s=5, on_error="raise").step_many(_episodes(2), ["a", "boom"])


def test_a_wrong_element_of_a_batched_step_ends_only_its_episode():
    guard = GuardedEnvironment(BatchedWithOneWrongType(), timeout_s=5, on_error="end")
    episodes = _episodes(3)
    turns = guard.step_many(episodes, ["a", "b", "c"])
    assert [t is None for t in turns] == [False, True, False]
    assert "expected gspo.environments.Turn" in episodes[1].error


def test_a_batched_step_gets_the_deadline_times_the_number_of_episodes():
    turns = GuardedEnvironment(SlowBatch(), timeout_s=0.2, on_error="raise").step_many(_episodes(3), ["a"] * 3)
    assert all(t is not None for t in turns)
    with pytest.raises(EnvironmentError, match="did not return within 0.2 s"):
        GuardedEnvironment(SlowBatch(), timeout_s=0.2, on_error="raise").step_many(_episodes(1), ["a"])


def test_a_reset_with_no_messages_is_named():
    class Empty(OneBadStep):
        def reset(self, episode):
            return []

    with pytest.raises(EnvironmentError, match="environment 'one-bad': reset returned no messages"):
        GuardedEnvironment(Empty(), on_error="raise").reset(Episode(row={}, index=0))
    episode = Episode(row={}, index=0)
    assert GuardedEnvironment(Empty(), on_error="end").reset(episode) is None
    assert episode.truncated == "error"


def test_messages_a_chat_template_refuses_are_the_environment_s_failure():
    guard = GuardedEnvironment(OneBadStep(), on_error="end")
    episode = Episode(row={}, index=0)

    def refuse():
        raise ValueError("Conversation roles must alternate user/assistant")

    assert guard.formatted(episode, refuse) is None and episode.truncated == "error"
    assert "cannot be formatted for the model (ValueError: Conversation roles must alternate" in episode.error
    with pytest.raises(EnvironmentError, match="environment 'one-bad': its messages cannot be formatted"):
        GuardedEnvironment(OneBadStep(), on_error="raise").formatted(Episode(row={}, index=1), refuse)


def test_close_is_called_for_every_episode_even_one_ended_by_a_failure():
    class Counting(OneBadStep):
        closed: list[int] = []

        def close(self, episode):
            self.closed.append(episode.index)
            if episode.index == 1:
                raise OSError("already gone")  # logged, never raised

    env = Counting()
    guard = GuardedEnvironment(env, timeout_s=5, on_error="end")
    episodes = _episodes(3)
    guard.step_many(episodes, ["a", "boom", "b"])
    for e in episodes:
        guard.close(e)
    assert env.closed == [0, 1, 2] and episodes[1].truncated == "error"
