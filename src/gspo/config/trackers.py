"""The names ``report_to`` accepts, and the check that their packages are installed.

Kept apart from ``gspo.trainer.trackers`` (which starts them) so that config validation imports
neither torch nor any tracker: ``importlib.util.find_spec`` only looks for the package.
"""

from __future__ import annotations

import importlib.util

from gspo.config.fields import ConfigError

#: tracker name -> (module that must be importable, install command)
TRACKER_PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
    "trackio": ("trackio", "pip install trackio"),
}


def check_report_to(names: list[str], field: str = "report_to") -> None:
    """Raise ConfigError unless every name is a known tracker whose package is installed (or 'none')."""
    allowed = [*TRACKER_PACKAGES, "none"]
    for name in names:
        if name not in allowed:
            raise ConfigError(field, f"must list trackers among {allowed}, got {name!r}")
    if "none" in names and len(names) > 1:
        raise ConfigError(field, f"'none' cannot be combined with trackers, got {names}")
    for name in names:
        if name == "none":
            continue
        module, install = TRACKER_PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                field,
                f"{name!r} needs the {module} package, which is not installed: {install} "
                f"(or pip install 'gspo[trackers]' for all of them)",
            )
