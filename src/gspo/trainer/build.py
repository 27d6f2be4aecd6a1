"""Assemble a ``GSPOTrainer`` from a ``GSPOConfig``: model, tokenizer, task data, rewards.

This is what ``gspo train`` (and ``gspo compare``) call; Python users may build the trainer directly.
The task named by ``config.task`` (or a weighted mixture ``"gsm8k:0.5,humaneval:0.5"``) provides the
training rows, the held-out rows and, as the reward named ``"task"``, its own scorer.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import torch

from gspo.config import ConfigError, GSPOConfig, RunConfig, use_chat_template
from gspo.models.device import resolve_device

__all__ = [
    "build_rewards",
    "build_task",
    "build_trainer",
    "load_rows",
    "resolve_device",
    "seed_everything",
    "setup_run",
    "wants_chat",
]

logger = logging.getLogger("gspo")


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def setup_run(config: RunConfig) -> torch.device:
    """Validate, set torch's threads, seed everything; the device the run asks for."""
    config.validate()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    return resolve_device(config.device)


def wants_chat(config: RunConfig, tokenizer) -> bool:
    """Whether prompts use the tokenizer's chat template (``config.chat``: auto / yes / no)."""
    from gspo.sampling import has_chat_template

    return use_chat_template(config.chat, has_chat_template(tokenizer))


def build_task(config: RunConfig):
    """The task object for ``config.task`` with its ``task_options`` (a single task, or a mixture spec with weights)."""
    from gspo.tasks import make_task

    try:
        return make_task(config.task, config.task_options, seed=config.seed)
    except ValueError as exc:
        raise ConfigError("task_options" if config.task_options else "task", str(exc)) from None


def load_rows(task, config: RunConfig, split: str, *, chat: bool, limit: int | None = None):
    kwargs: dict[str, Any] = dict(chat=chat, limit=limit)
    from gspo.tasks.mixture import MixtureTask

    if config.data_path and isinstance(task, MixtureTask):
        raise ConfigError(
            "data_path", "a mixture takes per-task paths in the spec ('gsm8k@/data/gsm8k:0.5,...'), not data_path"
        )
    if config.data_path:
        kwargs["path"] = config.data_path
    return task.load(split, **kwargs)


def build_rewards(config: GSPOConfig, task):
    from gspo.trainer.reward_runner import load_reward

    funcs = []
    for spec in config.rewards:
        if spec == "task":
            funcs.append(task.reward)
        else:
            try:
                funcs.append(load_reward(spec))
            except (ValueError, KeyError) as exc:
                raise ConfigError("rewards", str(exc)) from None
    return funcs


def build_trainer(config: GSPOConfig):
    """Everything a run needs, in the order that fails fastest: task, data, rewards, then the model."""
    from gspo.models.loading import load_model_and_tokenizer
    from gspo.trainer.distributed import launched_distributed
    from gspo.trainer.trainer import GSPOTrainer

    device = setup_run(config)
    if getattr(config, "environment", None):  # multi-turn episodes (gspo.trainer.episodes)
        from gspo.trainer.episodes import build_episode_trainer

        return build_episode_trainer(config)
    accelerator = None
    if launched_distributed():
        from accelerate import Accelerator

        from gspo.trainer.distributed import gpu_only_launch_error

        for kind in ("FSDP", "DEEPSPEED"):  # launched by hand with such a config (`accelerate launch ... -m gspo`)
            error = os.environ.get(f"ACCELERATE_USE_{kind}", "").lower() == "true" and gpu_only_launch_error(
                kind, "this launch"
            )
            if error:
                raise ConfigError("device", error)

        accelerator = Accelerator(cpu=device.type == "cpu")
        device = accelerator.device
    if config.load_in_4bit and device.type != "cuda":
        raise ConfigError("load_in_4bit", f"QLoRA needs a CUDA device (bitsandbytes 4-bit), got {device.type}")
    task = build_task(config)
    rewards = build_rewards(config, task)
    if config.load_in_4bit:
        from gspo.models.lora import load_4bit_base

        model, tokenizer = load_4bit_base(config.model, device=device)
    else:
        model, tokenizer = load_model_and_tokenizer(config.model, dtype=config.dtype, device=str(device))
    if config.lora_r > 0:
        from gspo.models.lora import apply_lora

        model = apply_lora(
            model,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            target_modules=config.lora_target_modules,
        )
    chat = wants_chat(config, tokenizer)
    train_rows = load_rows(task, config, config.train_split, chat=chat)
    eval_rows = (
        load_rows(task, config, config.eval_split, chat=chat, limit=config.eval_limit) if config.eval_limit else []
    )
    logger.info(
        "model %s (%.2fM params) on %s; task %s: %d train / %d eval rows; algorithm %s, clip %s; process %d of %d",
        config.model,
        sum(p.numel() for p in model.parameters()) / 1e6,
        device,
        config.task,
        len(train_rows),
        len(eval_rows),
        config.algorithm,
        config.clip_range,
        accelerator.process_index + 1 if accelerator else 1,
        accelerator.num_processes if accelerator else 1,
    )
    return GSPOTrainer(
        model, tokenizer, rewards, train_rows, config, eval_task=task, eval_data=eval_rows, accelerator=accelerator
    )
