"""Atomic, verified checkpoints: ``save_pretrained`` weights + tokenizer + trainer state + manifest.

Layout of a run directory::

    OUTPUT_DIR/checkpoints/step-000010/   periodic (the newest ``save_total_limit`` are kept)
    OUTPUT_DIR/best/                      best evaluation score so far
    OUTPUT_DIR/final/                     end of training

Each checkpoint folder holds the model (``save_pretrained``, safetensors), the tokenizer,
``trainer_state.pt`` (optimizer, scheduler, RNG states, step, data position, best score) and
``manifest.json`` listing every file with its size and SHA-256.

Atomicity: everything is written into a hidden temporary folder beside the target, files are fsync'ed,
the manifest is written last, and the folder is then renamed into place (a rename is atomic on POSIX).
A crash at any moment leaves either the previous checkpoint or the new complete one; leftover
temporary folders are ignored and cleaned up. On load the manifest is verified: a missing or altered
file raises ``CheckpointError`` naming the folder, and ``latest_checkpoint`` skips such a folder
(with a warning) to fall back to the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("gspo")

MANIFEST = "manifest.json"
STATE_FILE = "trainer_state.pt"
_STEP_RE = re.compile(r"^step-(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete or corrupted; the message names it."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    target: Path, model, tokenizer, state: dict[str, Any], *, extra: Callable[[Path], None] | None = None
) -> Path:
    """Write a complete checkpoint to ``target`` atomically (replacing an existing one).

    ``extra(folder)`` writes further files (a critic) into the folder before the manifest lists them.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        if extra is not None:
            extra(tmp)
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
            files[str(path.relative_to(tmp))] = {"sha256": _sha256(path), "bytes": path.stat().st_size}
        manifest = {"format": 1, "step": state.get("step"), "files": files}
        with open(tmp / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if target.exists():
            trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, trash)
            os.rename(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def verify_checkpoint(path: Path) -> dict:
    """Check every file against the manifest; return the manifest or raise ``CheckpointError``."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: no {MANIFEST}")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict) or not all(
            isinstance(info, dict) and isinstance(info.get("sha256"), str) and type(info.get("bytes")) is int
            for info in files.values()
        ):
            raise ValueError("'files' must map each file name to {sha256, bytes}")
        if manifest.get("step") is not None and type(manifest["step"]) is not int:
            raise ValueError("'step' must be an integer")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable {MANIFEST} ({exc})") from None
    for name, info in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is corrupted: {name} is missing")
        if file.stat().st_size != info["bytes"] or _sha256(file) != info["sha256"]:
            raise CheckpointError(f"checkpoint {path} is corrupted: {name} does not match its checksum")
    if STATE_FILE not in files:
        raise CheckpointError(f"checkpoint {path} has no {STATE_FILE}")
    return manifest


def load_trainer_state(path: Path) -> dict:
    verify_checkpoint(path)
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)


def periodic_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """Complete-looking periodic checkpoints, newest first (temporary folders are not listed)."""
    root = Path(output_dir) / "checkpoints"
    found = []
    if root.is_dir():
        for child in root.iterdir():
            m = _STEP_RE.match(child.name)
            if m and child.is_dir():
                found.append((int(m.group(1)), child))
    return sorted(found, reverse=True)


_OLD_RE = re.compile(r"^\.(?P<name>.+)\.old-[0-9a-f]{8}$")


def recover_interrupted_replacements(output_dir: Path) -> None:
    """Put back a checkpoint whose replacement was interrupted between save_checkpoint's two renames.

    Replacing ``NAME`` renames it to ``.NAME.old-*`` before renaming the new folder into place; a crash
    in between leaves no ``NAME`` but a complete ``.NAME.old-*``, which is renamed back here.
    """
    for parent in (Path(output_dir), Path(output_dir) / "checkpoints"):
        if not parent.is_dir():
            continue
        for child in sorted(parent.iterdir()):
            m = _OLD_RE.match(child.name)
            if not m or (parent / m["name"]).exists():
                continue
            try:
                verify_checkpoint(child)
            except CheckpointError:
                continue
            os.rename(child, parent / m["name"])
            logger.warning("recovered %s from an interrupted checkpoint replacement", parent / m["name"])


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest periodic or final checkpoint that verifies; corrupted ones are skipped with a warning."""
    recover_interrupted_replacements(output_dir)
    candidates = [p for _, p in periodic_checkpoints(output_dir)]
    final = Path(output_dir) / "final"
    if final.is_dir():
        candidates.append(final)
    good: list[tuple[int, Path]] = []
    for path in candidates:
        try:
            manifest = verify_checkpoint(path)
        except CheckpointError as exc:
            logger.warning("%s; falling back to an earlier checkpoint", exc)
            continue
        good.append((int(manifest.get("step") or 0), path))
    if not good:
        return None
    return max(good, key=lambda sp: (sp[0], sp[1].name != "final"))[1]


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete periodic checkpoints beyond the newest ``keep``, and stale temporary folders."""
    recover_interrupted_replacements(output_dir)
    for _, path in periodic_checkpoints(output_dir)[keep:]:
        shutil.rmtree(path, ignore_errors=True)
    root = Path(output_dir) / "checkpoints"
    for parent in (root, Path(output_dir)):
        if parent.is_dir():
            for child in parent.iterdir():
                if child.name.startswith(".") and (".tmp-" in child.name or ".old-" in child.name):
                    shutil.rmtree(child, ignore_errors=True)


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    import random

    import numpy as np

    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def restore_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def load_model_weights(model, path: Path, device) -> None:
    """Load a checkpoint's safetensors into ``model`` in place (full weights, or a PEFT adapter)."""
    from safetensors.torch import load_file

    from gspo.models.introspect import unwrap_model

    weights = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        weights.update(load_file(str(file), device=str(device)))
    bare = model.module if hasattr(model, "module") else model
    if hasattr(bare, "peft_config") and hasattr(bare, "get_base_model"):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(bare, weights)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        missing: list[str] = []
    else:
        inner = unwrap_model(model)
        result = inner.load_state_dict(weights, strict=False)
        tied = getattr(inner, "_tied_weights_keys", None) or {}
        missing = [k for k in result.missing_keys if k not in tied]  # tied weights are saved once
        unexpected = list(result.unexpected_keys)
    if unexpected or missing:
        raise CheckpointError(
            f"checkpoint {path}: weights do not match the model (unexpected {unexpected[:5]}, missing {missing[:5]})"
        )
