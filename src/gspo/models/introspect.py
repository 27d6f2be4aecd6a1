"""What a (possibly wrapped) Hugging Face model is underneath, and which forward arguments it takes.

Shared by the sampler and the trainer's scoring pass, so both see through the same wrappers:
DDP / ``accelerate`` (``.module``, possibly nested) first, then PEFT (``get_base_model()``).
"""

from __future__ import annotations

import inspect

from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying ``PreTrainedModel``: strips DDP/``accelerate`` wrappers and PEFT."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def accepts_kwarg(model: nn.Module, name: str) -> bool:
    """True when the underlying model's ``forward`` takes a keyword argument ``name``."""
    try:
        return name in inspect.signature(unwrap_model(model).forward).parameters
    except (TypeError, ValueError):
        return False
