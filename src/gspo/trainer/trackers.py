"""Experiment trackers, by the ``report_to`` convention of transformers and TRL.

``metrics.jsonl`` in the output folder is the source of truth (``gspo plot`` and resume read it);
trackers receive a copy of every numeric value of each logged step:

- ``tensorboard``: event files in ``<output_dir>/tensorboard`` (``torch.utils.tensorboard``);
- ``wandb``: a Weights & Biases run whose files go under ``<output_dir>``. Without network access,
  set ``WANDB_MODE=offline`` (wandb's own switch) and ``wandb sync`` the folder later;
- ``trackio``: a local trackio project (``TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``).

Each package is imported only when its name is asked for. Config validation
(``gspo.config.trackers.check_report_to``) runs before any model loads: an unknown name, or a
tracker whose package is missing, is an error naming the field and the install command.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class _TensorBoard:
    def __init__(self, output_dir: Path, **_: Any):
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class _WandB:
    def __init__(self, output_dir: Path, *, run_name: str, config: dict[str, Any], resume: bool):
        import wandb

        id_file = output_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if resume and id_file.exists() else None
        self._run = wandb.init(
            project="gspo",
            name=run_name,
            dir=str(output_dir),
            config=config,
            id=run_id,
            resume="allow" if run_id else None,
        )
        id_file.write_text(self._run.id)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


class _Trackio:
    def __init__(self, output_dir: Path, *, run_name: str, config: dict[str, Any], resume: bool):
        import trackio

        self._run = trackio.init(project="gspo", name=run_name, config=config, resume="allow" if resume else "never")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


_TRACKERS = {"tensorboard": _TensorBoard, "wandb": _WandB, "trackio": _Trackio}


def open_trackers(names: list[str], output_dir: Path, *, config: dict[str, Any], resume: bool) -> list[Tracker]:
    """Start the trackers named in ``names`` ('none' and an empty list start none)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    run_name = output_dir.resolve().name
    return [
        _TRACKERS[name](output_dir, run_name=run_name, config=config, resume=resume) for name in names if name != "none"
    ]


def numeric_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The finite numeric values of a metrics record, without ``step`` (what trackers plot)."""
    return {
        k: v
        for k, v in record.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
