"""``guess``: guess a hidden whole number with "higher" / "lower" replies; fewer turns score more.

Each row holds a secret in [low, high] (the environment's own rows: ``rows(split)`` draws them from a
seeded generator, train and test from different seeds). An episode::

    user:       I am thinking of a whole number from 1 to 20. Guess it ... one number per message.
    assistant:  10
    user:       Higher.
    assistant:  15
    user:       Correct!               (done)

A reply's last whole number is its guess; a reply without one gets "Reply with one whole number."
(a wasted turn). The final reward is ``max(0, 1 - turn_penalty × (turns - 1))`` when solved and 0
otherwise, so solving in fewer turns is worth more; ``solved`` is what evaluation counts. With
``progress_reward`` > 0 each turn also gets a per-turn reward: that fraction of the remaining
candidate range its feedback rules out (a binary-search guess earns about half), which exercises
per-turn advantages.
"""

from __future__ import annotations

import random
import re
from typing import Any

from gspo.environments.base import Environment, Episode, Turn

_NUMBER = re.compile(r"-?\d+")


class GuessNumberEnv(Environment):
    """See the module docstring. Options: ``low``, ``high``, ``turn_penalty``, ``progress_reward``,
    ``train_rows``, ``test_rows``, ``seed``."""

    name = "guess"

    def __init__(
        self,
        low: int = 1,
        high: int = 20,
        turn_penalty: float = 0.1,
        progress_reward: float = 0.0,
        train_rows: int = 2000,
        test_rows: int = 200,
        seed: int = 0,
    ):
        if high <= low:
            raise ValueError(f"high must be > low, got low={low}, high={high}")
        self.low, self.high = int(low), int(high)
        self.turn_penalty, self.progress_reward = float(turn_penalty), float(progress_reward)
        self.sizes = {"train": int(train_rows), "test": int(test_rows)}
        self.seed = int(seed)

    def prompt(self) -> str:
        return (
            f"I am thinking of a whole number from {self.low} to {self.high}. Guess it: reply with one number. "
            "I will tell you whether my number is higher or lower."
        )

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in self.sizes:
            raise ValueError(f"environment 'guess': split must be one of {list(self.sizes)}, got {split!r}")
        rng = random.Random(f"guess/{self.seed}/{split}")
        n = self.sizes[split] if limit is None else min(limit, self.sizes[split])
        return [
            {"prompt": self.prompt(), "secret": rng.randint(self.low, self.high), "id": f"guess/{split}/{i}"}
            for i in range(n)
        ]

    def reset(self, episode: Episode) -> list[dict[str, Any]]:
        episode.state.update(lo=self.low, hi=self.high, solved=False)
        return [{"role": "user", "content": self.prompt()}]

    def step(self, episode: Episode, reply: str) -> Turn:
        numbers = _NUMBER.findall(reply)
        if not numbers:
            return Turn([{"role": "user", "content": "Reply with one whole number."}])
        guess, secret, state = int(numbers[-1]), int(episode.row["secret"]), episode.state
        before = state["hi"] - state["lo"] + 1
        if guess == secret:
            state["solved"] = True
            return Turn([{"role": "user", "content": "Correct!"}], done=True, reward=self._progress(before, before - 1))
        if guess < secret:
            state["lo"] = max(state["lo"], guess + 1)
            word = "Higher."
        else:
            state["hi"] = min(state["hi"], guess - 1)
            word = "Lower."
        after = max(state["hi"] - state["lo"] + 1, 1)
        return Turn([{"role": "user", "content": word}], reward=self._progress(before, before - after))

    def _progress(self, before: int, ruled_out: int) -> float | None:
        if not self.progress_reward:
            return None
        return self.progress_reward * max(ruled_out, 0) / max(before, 1)

    def reward(self, episode: Episode) -> float:
        if not episode.state.get("solved"):
            return 0.0
        return max(0.0, 1.0 - self.turn_penalty * (episode.turns - 1))

    def solved(self, episode: Episode) -> bool:
        return bool(episode.state.get("solved"))
