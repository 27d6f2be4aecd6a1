"""Progress display that stays readable in a terminal and in a log file.

In a terminal (the stream is a TTY) this is a tqdm bar with the run's headline metrics. Anywhere
else (output redirected to a file, CI, a job scheduler) a bar would write carriage-return soup, so
it prints one plain line at the first and last step and at most every ``every_s`` seconds between.

Third-party bars (transformers' "Loading weights", "Writing model shards" when a checkpoint is
saved) would interleave with ours: :func:`library_bars_off` turns them off for the duration of a run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from gspo.trainer.metrics import progress_postfix


class Progress:
    """``update(metrics)`` once per step; ``close()`` at the end (safe to call twice)."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
        every_s: float = 30.0,
    ):
        self.total, self.desc, self.step = total, desc, initial
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self._start = self._last = time.monotonic()
        self._bar = None
        if enabled and _is_tty(self.stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=self.stream)

    def update(self, metrics: dict[str, Any]) -> None:
        self.step += 1
        if not self.enabled:
            return
        postfix = progress_postfix(metrics)
        if self._bar is not None:
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if self.step in (1, self.total) or now - self._last >= self.every_s:
            self._last = now
            elapsed = now - self._start
            shown = " ".join(f"{k} {v}" for k, v in postfix.items())
            print(
                f"{self.desc} step {self.step}/{self.total} | {elapsed:.0f}s | {shown}".rstrip(" |"),
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def library_bars_off() -> Iterator[None]:
    """Turn transformers' (and huggingface_hub's) progress bars off inside the block, then restore them."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
