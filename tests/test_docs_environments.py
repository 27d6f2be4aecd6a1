"""docs/environments.md's complete example, run as it stands: from Python and as --environment module:Class."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.helpers_cli import ROOT, save_tiny_model
from tests.helpers_tiny import tiny_model_and_tokenizer

DOC = ROOT / "docs" / "environments.md"


def example_code() -> str:
    text = DOC.read_text()
    section = text[text.index("### A complete example") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_documented_environment_trains_and_evaluates(tmp_path):
    namespace: dict = {}
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    model, tok = tiny_model_and_tokenizer(seed=4)
    summary = namespace["train"](model, tok, str(tmp_path / "run"))
    assert summary["steps"] == 2 and summary["eval_before"] is not None
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    step = [x for x in lines if "episodes/turns_mean" in x][0]
    assert 1 <= step["episodes/turns_mean"] <= 2 and step["episodes/env_errors"] == 0


def test_the_documented_environment_from_the_command_line(tmp_path):
    (tmp_path / "docs_env.py").write_text(example_code())
    model_dir = save_tiny_model(tmp_path / "tiny", chat=True)
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{tmp_path}")
    args = ["train", "--environment", "docs_env:NextNumber", "--model", model_dir, "--max-turns", "2",
            "--max-turn-tokens", "4", "--max-new-tokens", "48", "--prompts-per-step", "2", "--group-size", "2",
            "--max-steps", "1", "--eval-limit", "4", "--output-dir", tmp_path / "out", "--num-threads", "1"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "gspo", *map(str, args)], capture_output=True, text=True, env=env,
                            cwd=ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 1
