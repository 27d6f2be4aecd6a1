"""Named registries of pure loss-side functions (losses, advantage estimators), and calling a function
with the keyword arguments it declares: how a loss receives its own hyper-parameters by name."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class Registry(dict):
    """``name -> function``; ``@registry.register(name)`` adds one, ``registry.get_fn(name)`` looks one up."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        def wrap(fn: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            return fn

        return wrap

    def get_fn(self, name: str | Callable[..., Any]) -> Callable[..., Any]:
        if callable(name):
            return name
        try:
            return self[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {sorted(self)}") from None


@functools.cache
def declared_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword parameters ``fn`` takes (None when it takes ``**kwargs``: everything)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def call_with_declared(fn: Callable[..., Any], *args: Any, **available: Any) -> Any:
    """``fn(*args, **kw)`` where ``kw`` is the part of ``available`` that ``fn`` declares."""
    names = declared_keywords(fn)
    return fn(*args, **(available if names is None else {k: v for k, v in available.items() if k in names}))
