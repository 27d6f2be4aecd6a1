"""Devices: the one resolution of a config's ``device`` and the one lookup of a model's device."""

from __future__ import annotations

import torch
from torch import nn

from gspo.config.fields import ConfigError


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; a CUDA device without CUDA is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} requested but CUDA is not available")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
