"""What a (possibly wrapped) Hugging Face model is underneath, and which forward arguments it takes.

Shared by the sampler and the scoring pass, so both see through the same wrappers:
DDP / ``accelerate`` (``.module``, possibly nested) first, then PEFT (``get_base_model()``).

The KV cache argument changed name in transformers 5.24: ``cache`` (``past_key_values`` still
works there but warns, and goes in 5.40). :func:`cache_argument` decides, once per model, which
name its ``forward`` takes, so current releases get ``cache`` and older releases and remote-code
models keep ``past_key_values``; :func:`returned_cache` reads the cache back from an output under
the same name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying ``PreTrainedModel``: strips DDP/``accelerate`` wrappers and PEFT."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def cached_on(module: nn.Module, name: str, compute: Callable[[nn.Module], Any]) -> Any:
    """``compute(module)``, computed once and kept as attribute ``name`` of the module (for static facts).

    ``compute`` must not return None (None means "not computed yet").
    """
    value = getattr(module, name, None)
    if value is None:
        value = compute(module)
        try:
            object.__setattr__(module, name, value)
        except (AttributeError, TypeError):
            pass
    return value


def _forward_parameters(module: nn.Module) -> frozenset[str]:
    """Names of the keyword arguments of ``module.forward`` (cached on the module)."""

    def compute(m: nn.Module) -> frozenset[str]:
        try:
            return frozenset(inspect.signature(m.forward).parameters)
        except (TypeError, ValueError):
            return frozenset()

    return cached_on(module, "_gspo_forward_parameters", compute)


def accepts_kwarg(model: nn.Module, name: str) -> bool:
    """True when the underlying model's ``forward`` takes a keyword argument ``name``."""
    return name in _forward_parameters(unwrap_model(model))


def cache_argument(model: nn.Module) -> str | None:
    """The name under which the underlying model's ``forward`` takes a KV cache, or None.

    ``"cache"`` where the forward declares it (transformers >= 5.24), else ``"past_key_values"``
    (older releases, remote-code models), else None. Decided once per model.
    """
    params = _forward_parameters(unwrap_model(model))
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None


def returned_cache(output: Any, argument: str | None) -> Any:
    """The KV cache in a model ``output``, read under the name the model's forward takes (None if absent)."""
    if argument == "cache":
        found = getattr(output, "cache", None)
        if found is not None:
            return found
    return getattr(output, "past_key_values", None)


def context_length(model: nn.Module) -> int | None:
    """The model's context window (max_position_embeddings / n_positions / n_ctx), if it declares one."""
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def enable_activation_checkpointing(model: nn.Module) -> bool:
    """Activation (gradient) checkpointing on, non-reentrant, under transformers' current name
    (``activation_checkpointing_enable``, transformers 5.2x) or the older one; False if the model has neither."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        return False
    return True
