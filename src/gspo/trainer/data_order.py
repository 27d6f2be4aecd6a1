"""Deterministic, resumable order of training prompts.

Epoch e visits the rows in ``randperm(n, generator seeded with seed + e)``; the state is just
``(epoch, position)``, so a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PromptOrder:
    num_rows: int
    seed: int
    epoch: int = 0
    position: int = 0

    def __post_init__(self):
        if self.num_rows < 1:
            raise ValueError("train data: no rows to train on")
        self._perm = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_rows, generator=g).tolist()

    def take(self, k: int) -> list[int]:
        """The next ``k`` row indices, wrapping into new epochs as needed."""
        out: list[int] = []
        while len(out) < k:
            if self.position >= self.num_rows:
                self.epoch, self.position = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
            step = min(k - len(out), self.num_rows - self.position)
            out.extend(self._perm[self.position : self.position + step])
            self.position += step
        return out

    def state_dict(self) -> dict:
        return {"num_rows": self.num_rows, "seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if state["num_rows"] != self.num_rows:
            raise ValueError(
                f"resume: the checkpoint was trained on {state['num_rows']} rows, the data now has {self.num_rows}"
            )
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._perm = self._permutation(self.epoch)
