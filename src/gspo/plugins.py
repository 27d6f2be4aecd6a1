"""What users plug in by dotted path (``'package.module:name'``): reward functions, environments.

One resolver, so that every plug-in point accepts the same forms and names the same failures.
"""

from __future__ import annotations

import importlib
from typing import Any


def split_dotted(path: str) -> tuple[str, str]:
    """``(module, name)`` of ``'package.module:name'`` or ``'package.module.name'`` (empty parts if neither)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    return module_name, attr


def import_dotted(path: str, what: str, malformed: str) -> Any:
    """The object at ``'package.module:name'`` (or ``'package.module.name'``; ``name`` may be dotted).

    ValueError: ``malformed`` for a path of neither form; ``"{what} {path!r}: cannot import module ..."``
    or ``"... has no attribute ..."`` when the module or the attribute is missing.
    """
    module_name, attr = split_dotted(path)
    if not module_name or not attr or ":" in attr:
        raise ValueError(malformed)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {path!r}: cannot import module {module_name!r} ({exc})") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    return target
