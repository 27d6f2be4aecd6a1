"""Deterministic SIGKILL points inside a ``gspo train`` process, armed from outside by an env var.

Used by ``test_crash_resume.py`` as the run's reward function::

    GSPO_CRASH=optimizer@3#2 python -m gspo train ... --rewards tests.reliability.crashpoints:reward

Importing this module (``load_reward`` does, before the model loads) arms the crash point named by
``GSPO_CRASH`` = ``PHASE@STEP[#N]``; without the variable nothing is installed and :func:`reward` is
a plain toy reward. Nothing in ``src/`` is patched: the triggers are public hooks that observe the
run from the side.

=================  ===================================================================  ==========
phase              the process kills itself ...                                         trigger
=================  ===================================================================  ==========
``sample``         at the N-th model forward of step STEP's rollout (N=2: first decode  torch global
                   step, KV cache live; default N=2)                                    forward pre-hook
``reward``         inside the reward call of step STEP (rollout done, no update yet)    this reward
``optimizer``      right before the N-th optimizer step of step STEP (N=2: the first    torch global
                   minibatch's update is already applied in memory; default N=2)        optimizer pre-hook
``ckpt-begin``     at the first file the checkpoint of STEP writes in its temp folder   audit "open"
                   (``config.json``: the temp folder is still empty)
``ckpt-weights``   when the tokenizer starts being written (weights written; tokenizer  audit "open"
                   and ``trainer_state.pt`` missing)
``ckpt-fsync``     at the first fsync re-open (every file written, nothing fsynced,     audit "open"
                   no manifest)
``ckpt-manifest``  when ``manifest.json`` is opened for writing                         audit "open"
``ckpt-rename``    at the rename of the complete temp folder into place (if the target  audit "os.rename"
                   existed it has already been moved aside to ``.NAME.old-*``)
``prune``          at the N-th file deletion while pruning old periodic checkpoints     audit "shutil.rmtree"
                   after STEP's save (a half-deleted old checkpoint; default N=2)       + "os.remove"
=================  ===================================================================  ==========

STEP is the 1-based training step (for ``ckpt-*``: the checkpoint ``step-00000STEP``, or ``final``).
Before dying the process writes ``PHASE@STEP#N`` (what actually fired) to ``$GSPO_CRASH_MARKER``,
so a test can tell "killed where intended" from "crashed for another reason".
``GSPO_CRASH_ACTION=stop`` sends SIGSTOP instead of SIGKILL, for a test that kills from outside.
"""

from __future__ import annotations

import os
import re
import signal
import sys

ENV, MARKER_ENV, ACTION_ENV = "GSPO_CRASH", "GSPO_CRASH_MARKER", "GSPO_CRASH_ACTION"
PHASES = (
    "sample",
    "reward",
    "optimizer",
    "ckpt-begin",
    "ckpt-weights",
    "ckpt-fsync",
    "ckpt-manifest",
    "ckpt-rename",
    "prune",
)
_DEFAULT_ORDINAL = {"sample": 2, "optimizer": 2, "prune": 2}
_SPEC_RE = re.compile(r"^(?P<phase>[a-z-]+)@(?P<step>\d+|final)(?:#(?P<n>\d+))?$")
_TMP_RE = re.compile(r"^\.(?P<name>step-\d{6}|final|best)\.tmp-")


def toy_reward(completions) -> list[float]:
    """Same toy reward as ``tests.trainer.conftest.count_a_reward`` (plenty of variance)."""
    return [float(sum(ch.islower() or ch.isdigit() for ch in c) + c.count("a")) for c in completions]


def reward(prompts, completions, **_columns):
    """The run's reward: fires the ``reward`` crash point, then scores like ``count_a_reward``."""
    if _ARMED is not None and _ARMED[0] == "reward":
        trainer = _trainer()
        if trainer is not None:
            _fire_if("reward", trainer.step + 1)
    return toy_reward(completions)


# ---------------------------------------------------------------------------------------------
def parse(spec: str) -> tuple[str, str, int]:
    m = _SPEC_RE.match(spec.strip())
    if not m or m["phase"] not in PHASES:
        raise ValueError(f"{ENV}={spec!r}: expected PHASE@STEP[#N] with PHASE in {PHASES}")
    phase, step = m["phase"], m["step"]
    step = step if step == "final" else str(int(step))
    return phase, step, int(m["n"]) if m["n"] else _DEFAULT_ORDINAL.get(phase, 1)


_ARMED: tuple[str, str, int] | None = None
_counts: dict[tuple[str, str], int] = {}
_busy = False
_pruning = [None]  # the periodic checkpoint folder being deleted (set by the shutil.rmtree event)


def _trainer():
    """The GSPOTrainer running this call (found by walking up the stack; read-only)."""
    frame = sys._getframe(1)
    while frame is not None:
        obj = frame.f_locals.get("self")
        if type(obj).__name__ == "GSPOTrainer":
            return obj
        frame = frame.f_back
    return None


def _fire_if(phase: str, step) -> None:
    """Count one occurrence of ``phase`` at ``step``; die when it is the armed one."""
    global _busy
    armed_phase, armed_step, armed_n = _ARMED
    if phase != armed_phase or str(step) != armed_step:
        return
    key = (phase, str(step))
    _counts[key] = _counts.get(key, 0) + 1
    if _counts[key] != armed_n:
        return
    _busy = True
    marker = os.environ.get(MARKER_ENV)
    if marker:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, f"{phase}@{step}#{armed_n}".encode())
        os.fsync(fd)
        os.close(fd)
    sys.stderr.flush()
    if os.environ.get(ACTION_ENV) == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)  # the test kills us from outside while we are frozen here
    os.kill(os.getpid(), signal.SIGKILL)


def _checkpoint_name(path) -> tuple[str | None, str]:
    """(step label or None, file name) for a path inside a checkpoint temp folder."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:  # an fd
        return None, ""
    if ".tmp-" not in path:
        return None, ""
    parent, name = os.path.split(path)
    for candidate in (os.path.basename(parent), name):
        m = _TMP_RE.match(candidate)
        if m:
            label = m["name"]
            return (str(int(label[5:])) if label.startswith("step-") else label), (name if candidate != name else "")
    return None, ""


def _audit(event: str, args) -> None:
    if _busy or event not in ("open", "os.rename", "shutil.rmtree", "os.remove"):
        return
    phase = _ARMED[0]
    if event == "open" and phase in ("ckpt-begin", "ckpt-weights", "ckpt-fsync", "ckpt-manifest"):
        path, mode, flags = args
        label, name = _checkpoint_name(path)
        if label is None or not name:
            return
        if isinstance(mode, str):
            writing, updating = any(c in mode for c in "wax+"), "+" in mode
        else:  # os.open: flags only
            writing = updating = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if not writing:
            return
        if (
            phase == "ckpt-begin"
            or (phase == "ckpt-weights" and name.startswith("tokenizer"))
            or (phase == "ckpt-fsync" and updating)
            or (phase == "ckpt-manifest" and name == "manifest.json")
        ):
            _fire_if(phase, label)
    elif event == "os.rename" and phase == "ckpt-rename":
        label, name = _checkpoint_name(args[0])
        if label is not None and not name:  # the temp folder itself is being renamed into place
            _fire_if(phase, label)
    elif event == "shutil.rmtree" and phase == "prune":
        try:
            path = os.fsdecode(os.fspath(args[0]))
        except TypeError:
            path = ""
        _pruning[0] = path if re.search(r"(^|/)checkpoints/step-\d{6}/?$", path) else None
    elif event == "os.remove" and phase == "prune" and _pruning[0]:
        trainer = _trainer()
        if trainer is not None:
            _fire_if(phase, trainer.step)


def _forward_pre_hook(module, _args):
    if _busy or not type(module).__name__.endswith("ForCausalLM"):
        return None
    import torch

    if torch.is_inference_mode_enabled():  # the sampler runs in inference mode; scoring does not
        trainer = _trainer()
        if trainer is not None:
            _fire_if("sample", trainer.step + 1)
    return None


def _optimizer_pre_hook(_optimizer, _args, _kwargs):
    trainer = _trainer()
    if trainer is not None:
        _fire_if("optimizer", trainer.step + 1)
    return None


def _install(spec: str) -> None:
    global _ARMED
    _ARMED = parse(spec)
    phase = _ARMED[0]
    if phase == "sample":
        from torch.nn.modules.module import register_module_forward_pre_hook

        register_module_forward_pre_hook(_forward_pre_hook)
    elif phase == "optimizer":
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        register_optimizer_step_pre_hook(_optimizer_pre_hook)
    elif phase != "reward":
        sys.addaudithook(_audit)


if os.environ.get(ENV):
    _install(os.environ[ENV])
