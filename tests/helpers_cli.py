"""Running the ``gspo`` command in a subprocess, and a tiny model saved as a folder, for CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers_tiny import tiny_model_and_tokenizer

ROOT = Path(__file__).resolve().parents[1]
#: A 2-step run of the addition task small enough for a tiny model (seconds).
TINY_RUN = ["--task", "addition", "--max-steps", "2", "--prompts-per-step", "4", "--group-size", "4",
            "--max-new-tokens", "4", "--eval-limit", "8"]  # fmt: skip
#: Deprecation and future warnings as errors in the subprocess.
STRICT_WARNINGS = ["-W", "error::DeprecationWarning", "-W", "error::FutureWarning"]


def run_gspo(*args, env_extra: dict | None = None, strict: bool = False, timeout: int = 300):
    """``python -m gspo ARGS`` from the repository root, output captured (so not a terminal)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **(env_extra or {}))
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # the command decides, as it does for a user
    env.pop("TQDM_DISABLE", None)
    flags = STRICT_WARNINGS if strict else []
    return subprocess.run([sys.executable, *flags, "-m", "gspo", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)  # fmt: skip


def save_tiny_model(path: Path, **kwargs) -> Path:
    """A tiny model and its tokenizer (``tiny_model_and_tokenizer(**kwargs)``) saved in ``path``."""
    model, tok = tiny_model_and_tokenizer(**kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
