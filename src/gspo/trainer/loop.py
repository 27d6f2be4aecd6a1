"""The run around the training steps of a ``GSPOTrainer``: resume, evaluation before / during /
after training, ``metrics.jsonl`` and trackers, periodic / best / final checkpoints (what they hold
and how they are restored: with a critic, also its weights, optimizer and schedule), ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from gspo.trainer import checkpoint as ckpt
from gspo.trainer.metrics import MetricsLogger
from gspo.trainer.progress import Progress

logger = logging.getLogger("gspo")


def run(trainer) -> dict[str, Any]:
    """Train ``trainer`` for ``config.max_steps`` steps and return the run's summary."""
    cfg = trainer.config
    metrics_log = _start(trainer)
    start = time.perf_counter()
    if trainer.eval_before is None:
        trainer.eval_before = trainer.evaluate()
        if trainer.eval_before is not None:
            logger.info("eval before training: %.3f", trainer.eval_before)
            metrics_log.log(0, {"eval/accuracy": trainer.eval_before})
    bar = Progress(cfg.max_steps, initial=trainer.step, desc="gspo", enabled=cfg.progress and trainer.dist.is_main)
    last_metrics: dict[str, Any] = {}
    try:
        while trainer.step < cfg.max_steps:
            last_metrics = trainer.train_step()
            _after_step(trainer, last_metrics, metrics_log)
            bar.update(last_metrics)
    finally:
        bar.close()
    eval_after = _finish(trainer, metrics_log)
    return _write_summary(trainer, eval_after, last_metrics, time.perf_counter() - start)


def _start(trainer) -> MetricsLogger:
    """Resume from the newest complete checkpoint when asked; write config.json; open the metrics log."""
    cfg = trainer.config
    trainer.output_dir.mkdir(parents=True, exist_ok=True)
    resume_step = None
    if cfg.resume:
        latest = ckpt.latest_checkpoint(trainer.output_dir)
        if latest is None:
            logger.warning("resume: no complete checkpoint in %s; starting from scratch", trainer.output_dir)
        else:
            trainer.load(latest)
            resume_step = trainer.step
    if trainer.dist.is_main:
        (trainer.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    return MetricsLogger(
        trainer.output_dir,
        report_to=cfg.report_to,
        run_config=dataclasses.asdict(cfg),
        resume_step=resume_step,
        enabled=trainer.dist.is_main,
    )


def _after_step(trainer, metrics: dict[str, Any], metrics_log: MetricsLogger) -> None:
    """Evaluation (and the 'best' checkpoint), the metrics line and the periodic checkpoint of a step."""
    cfg, step = trainer.config, trainer.step
    if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
        score = trainer.evaluate()
        metrics["eval/accuracy"] = score
        _keep_best(trainer, score)
    if step % cfg.log_every == 0 or step == cfg.max_steps:
        metrics_log.log(step, metrics)
    if cfg.save_steps and step % cfg.save_steps == 0 and step < cfg.max_steps:
        trainer.save(trainer.output_dir / "checkpoints" / f"step-{step:06d}")
        if trainer.dist.is_main:
            ckpt.prune_checkpoints(trainer.output_dir, cfg.save_total_limit)


def _keep_best(trainer, score: float | None) -> None:
    if score is not None and (trainer.best_score is None or score > trainer.best_score):
        trainer.best_score = score
        trainer.save(trainer.output_dir / "best")


def _finish(trainer, metrics_log: MetricsLogger) -> float | None:
    """Evaluation after training, the best and final checkpoints; closes the log."""
    cfg = trainer.config
    eval_after = trainer.evaluate()
    if eval_after is not None:
        metrics_log.log(trainer.step, {"eval/accuracy": eval_after})
        if cfg.eval_every:
            _keep_best(trainer, eval_after)
    trainer.save(trainer.output_dir / "final")
    if trainer.dist.is_main:
        ckpt.prune_checkpoints(trainer.output_dir, cfg.save_total_limit)
    metrics_log.close()
    return eval_after


def _write_summary(trainer, eval_after: float | None, last_metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    cfg = trainer.config
    summary = {
        "eval_before": trainer.eval_before,
        "eval_after": eval_after,
        "steps": trainer.step,
        "optimizer_steps": trainer.optimizer_steps,
        "skipped_steps": trainer.skipped_steps,
        "best_eval": trainer.best_score,
        "final_reward": last_metrics.get("reward/mean"),
        "train_seconds": seconds,
        "algorithm": cfg.algorithm,
        "model": cfg.model,
        "task": cfg.task,
        "seed": cfg.seed,
    }
    if trainer.dist.is_main:
        (trainer.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def checkpoint_state(trainer) -> dict[str, Any]:
    """Everything besides the weights that an exact resume needs."""
    return {
        "step": trainer.step,
        "optimizer_steps": trainer.optimizer_steps,
        "skipped_steps": trainer.skipped_steps,
        "best_score": trainer.best_score,
        "eval_before": trainer.eval_before,
        "clip_scale": trainer.clip_scale,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "data_order": trainer.order.state_dict(),
        "rng": ckpt.rng_state({"sample": trainer.sample_gen, "shuffle": trainer.shuffle_gen}),
        "config": dataclasses.asdict(trainer.config),
        "critic": trainer.critic.state_dict() if trainer.critic is not None else None,
    }


def save_checkpoint(trainer, target: Path) -> Path:
    """Write a checkpoint from the main process; every process waits until it is complete."""
    if trainer.dist.is_main:
        critic = trainer.critic
        ckpt.save_checkpoint(
            target,
            trainer.dist.unwrap(trainer.model),
            trainer.tokenizer,
            checkpoint_state(trainer),
            extra=critic.save if critic is not None else None,
        )
    trainer.dist.barrier()
    return target


def load_checkpoint(trainer, path: Path) -> None:
    """Restore weights and trainer state from a checkpoint folder (verified against its manifest)."""
    state = ckpt.load_trainer_state(path)
    ckpt.load_model_weights(trainer.model, path, trainer.device)
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.order.load_state_dict(state["data_order"])
    ckpt.restore_rng_state(state["rng"], {"sample": trainer.sample_gen, "shuffle": trainer.shuffle_gen})
    trainer.step, trainer.optimizer_steps = state["step"], state["optimizer_steps"]
    trainer.skipped_steps, trainer.best_score = state["skipped_steps"], state["best_score"]
    trainer.eval_before = state.get("eval_before")
    trainer.clip_scale = state.get("clip_scale", 1.0)
    if trainer.critic is not None:  # its weights, optimizer and schedule
        if state.get("critic") is None:
            raise ckpt.CheckpointError(f"checkpoint {path} holds no critic state (saved by a run without one)")
        trainer.critic.load(path)
        trainer.critic.load_state_dict(state["critic"])
    logger.info("resumed from %s at step %d", path, trainer.step)
