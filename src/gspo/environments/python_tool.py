"""``python``: a Python tool. The model may write code in a marked block; the sandbox runs it and the
captured output (capped) comes back as the next message; a turn without a code block is the answer.

Episode, from a task row (arithmetic, GSM8K, any task whose rows have a ``prompt``):

    user:       <the task's prompt>\\n\\n<instruction: how to call the tool>
    assistant:  ```python\\nprint(37 * 41)\\n```
    tool:       1517                      (stdout; on an error its last line, e.g. "ZeroDivisionError: ...")
    assistant:  1517                      (no code block: the episode is over)

The final reward is the task's own scorer on the last reply (``task.score``: reasoning-gym's verifier,
GSM8K's number match) on its text outside code blocks, so a right answer with or without the tool
scores 1, and code never counts as an answer (an episode cut by a limit while its last turn held only
code scores 0). ``call_bonus`` adds a
per-turn reward for a tool call that ran without error (default 0: no shaping).

Code runs in :mod:`gspo.rewards.sandbox` (a separate process per call: namespaces, seccomp, memory
cgroup, a wall-clock deadline), several calls of one turn in parallel. The message the model gets
back holds at most ``max_output_chars`` characters (the rest cut, marked with "...").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gspo.environments.base import Environment, Episode, Turn

INSTRUCTION = (
    "You can run Python to help you: write code in a ```python code block and end your message; "
    "you will get back what it prints. When you know the answer, reply with the final answer only."
)
_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str | None:
    """The last fenced code block of ``reply`` (```python ... ``` or ``` ... ```), or None."""
    blocks = _BLOCK.findall(reply)
    code = blocks[-1].strip() if blocks else None
    return code or None


def without_code(reply: str) -> str:
    """``reply`` without its fenced code blocks (an unclosed one at the end included)."""
    text = _BLOCK.sub(" ", reply)
    at = text.find("```")
    return text if at < 0 else text[:at]


def prompt_text(row: dict[str, Any]) -> str:
    """A row's prompt as text: a string as is, a chat list's last user message."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return str(users[-1])
    raise ValueError(f"row {row.get('id', '?')}: no prompt text")


def cap(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


class PythonToolEnv(Environment):
    """See the module docstring. Options: ``instruction``, ``max_output_chars``, ``timeout_s`` (per
    run), ``memory_mb``, ``call_bonus``, ``workers`` (parallel sandbox runs; default: CPU count)."""

    name = "python"

    def __init__(
        self,
        instruction: str = INSTRUCTION,
        max_output_chars: int = 300,
        timeout_s: float = 5.0,
        memory_mb: int = 512,
        call_bonus: float = 0.0,
        workers: int | None = None,
    ):
        if max_output_chars < 1:
            raise ValueError(f"max_output_chars must be >= 1, got {max_output_chars}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.instruction, self.max_output_chars = instruction, int(max_output_chars)
        self.timeout_s, self.memory_mb, self.call_bonus, self.workers = (
            float(timeout_s),
            int(memory_mb),
            call_bonus,
            workers,
        )

    def reset(self, episode: Episode) -> list[dict[str, Any]]:
        text = prompt_text(episode.row)
        return [{"role": "user", "content": f"{text}\n\n{self.instruction}" if self.instruction else text}]

    def run_code(self, codes: Sequence[str]) -> list[tuple[str, bool]]:
        """``(output, ok)`` of each program: stdout, and on an error the last line of stderr."""
        from gspo.rewards.sandbox import SandboxLimits, run_tests_many

        limits = SandboxLimits(timeout_s=self.timeout_s, cpu_s=self.timeout_s, memory_mb=self.memory_mb,
                               max_output_bytes=4 * self.max_output_chars)  # fmt: skip
        out = []
        for r in run_tests_many([(c, "") for c in codes], limits=limits, max_workers=self.workers):
            ok = r.status == "passed"
            text = r.stdout
            if r.status == "timeout":
                note = f"(timed out after {self.timeout_s:g} s)"
                out.append((f"{cap(text, self.max_output_chars)}\n{note}".strip(), False))
                continue
            if not ok:
                last = [line for line in r.stderr.strip().splitlines() if line.strip()][-1:] or [r.status]
                text = f"{text}\n{last[0]}" if text.strip() else last[0]
            out.append((cap(text, self.max_output_chars) or "(no output)", ok))
        return out

    def step_many(self, episodes: Sequence[Episode], replies: Sequence[str]) -> list[Turn]:
        codes = [extract_code(r) for r in replies]
        ran = iter(self.run_code([c for c in codes if c is not None]))
        turns = []
        for code in codes:
            if code is None:
                turns.append(Turn(done=True))
                continue
            output, ok = next(ran)
            bonus = self.call_bonus if ok and self.call_bonus else None
            turns.append(Turn([{"role": "tool", "content": output}], reward=bonus, tool_call=True, tool_error=not ok))
        return turns

    def step(self, episode: Episode, reply: str) -> Turn:
        return self.step_many([episode], [reply])[0]

    def reward(self, episode: Episode) -> float:
        """The task's score of the last reply's text outside code blocks (1 for a right answer); 0
        without a task."""
        if self.task is None:
            return 0.0
        return float(self.task.score(without_code(episode.last_reply), episode.row))
