"""The run around the training steps of a ``GSPOTrainer``: resume, evaluation before / during /
after training, ``metrics.jsonl`` and trackers, periodic / best / final checkpoints, ``summary.json``."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

from gspo.trainer import checkpoint as ckpt
from gspo.trainer.metrics import MetricsLogger
from gspo.trainer.progress import Progress

logger = logging.getLogger("gspo")


def run(trainer) -> dict[str, Any]:
    """Train ``trainer`` for ``config.max_steps`` steps and return the run's summary."""
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
    metrics_log = MetricsLogger(trainer.output_dir, report_to=cfg.report_to, run_config=dataclasses.asdict(cfg),
                                resume_step=resume_step, enabled=trainer.dist.is_main)
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
            metrics = trainer.train_step()
            last_metrics = metrics
            if cfg.eval_every and trainer.step % cfg.eval_every == 0 and trainer.step < cfg.max_steps:
                score = trainer.evaluate()
                metrics["eval/accuracy"] = score
                if score is not None and (trainer.best_score is None or score > trainer.best_score):
                    trainer.best_score = score
                    trainer.save(trainer.output_dir / "best")
            if trainer.step % cfg.log_every == 0 or trainer.step == cfg.max_steps:
                metrics_log.log(trainer.step, metrics)
            if cfg.save_steps and trainer.step % cfg.save_steps == 0 and trainer.step < cfg.max_steps:
                trainer.save(trainer.output_dir / "checkpoints" / f"step-{trainer.step:06d}")
                if trainer.dist.is_main:
                    ckpt.prune_checkpoints(trainer.output_dir, cfg.save_total_limit)
            bar.update(metrics)
    finally:
        bar.close()
    eval_after = trainer.evaluate()
    if eval_after is not None:
        metrics_log.log(trainer.step, {"eval/accuracy": eval_after})
        if cfg.eval_every and (trainer.best_score is None or eval_after > trainer.best_score):
            trainer.best_score = eval_after
            trainer.save(trainer.output_dir / "best")
    trainer.save(trainer.output_dir / "final")
    if trainer.dist.is_main:
        ckpt.prune_checkpoints(trainer.output_dir, cfg.save_total_limit)
    metrics_log.close()
    summary = {
        "eval_before": trainer.eval_before,
        "eval_after": eval_after,
        "steps": trainer.step,
        "optimizer_steps": trainer.optimizer_steps,
        "skipped_steps": trainer.skipped_steps,
        "best_eval": trainer.best_score,
        "final_reward": last_metrics.get("reward/mean"),
        "train_seconds": time.perf_counter() - start,
        "algorithm": cfg.algorithm,
        "model": cfg.model,
        "task": cfg.task,
        "seed": cfg.seed,
    }
    if trainer.dist.is_main:
        (trainer.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
