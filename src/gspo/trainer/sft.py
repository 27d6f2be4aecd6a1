"""Supervised fine-tuning (SFT) on a task's reference completions.

Two uses: the *vanilla fine-tuning* baseline that GSPO/GRPO are compared against (``gspo compare
--algos gspo,grpo,sft``), and a warm start before RL (``gspo sft`` then ``gspo train --model
OUTPUT/final``).

**Which text is the reference** (``reference_column``; ``None`` picks the first column present in the
task's rows, in this order):

1. ``reference`` -- a column made for this purpose (e.g. a JSONL task that provides one);
2. ``solution`` -- the full worked solution (GSM8K's reasoning ending in ``#### N``; MATH's solution
   with ``\\boxed{}``): better than the bare number, and the task's scorer accepts it;
3. ``canonical_solution`` -- the code tasks' reference implementation;
4. ``answer`` -- the final answer (``addition``: ``"85"``; multiple-choice tasks: the letter).

Rows whose reference is missing or empty are skipped (counted in the summary). As a sanity check the
summary reports ``reference_accuracy``: the fraction of (up to 200) references that the task's own
scorer accepts -- a value below 1 means SFT trains on text the reward would reject.

**Loss**: the prompt is encoded exactly as for sampling (:func:`gspo.sampling.encode_prompts`: left
padding, chat template, BOS), the reference is tokenized without special tokens and the EOS token is
appended, so the model learns to stop. Cross-entropy covers the completion tokens only (the prompt is
masked) and is divided by the number of completion tokens in the whole optimizer step (a token mean
over the batch), so the micro-batch size does not change the result. Log-probs come from the
trainer's scoring pass (:func:`gspo.sampling.scoring.completion_logprobs`: no logits over prompt
positions).

**Data order**: ``gspo.trainer.data_order.PromptOrder`` with the run's seed -- the same order a
``GSPOTrainer`` with the same seed and train split uses, so with ``batch_size = prompts_per_step`` and
``max_steps`` equal, SFT sees exactly the prompts the RL run saw, in the same order.

Outputs in ``output_dir``: ``metrics.jsonl`` (loss, grad norm, lr, tokens per step; ``eval/accuracy``
rows), ``summary.json``, ``config.json`` and ``final/`` (``save_pretrained`` model + tokenizer, via
:func:`gspo.trainer.checkpoint.save_checkpoint`), loadable with ``load_model_and_tokenizer``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from gspo.config.fields import ConfigError
from gspo.config.run import RunConfig, config_loader

logger = logging.getLogger("gspo")

#: Reference columns, in the order of preference used when ``reference_column`` is None.
REFERENCE_COLUMNS = ("reference", "solution", "canonical_solution", "answer")


@dataclass
class OfflineConfig(RunConfig):
    """The fields of the offline runs (SFT, offline DPO) on top of the shared run fields; five defaults differ."""

    # ----------------------------------------------------------------- defaults that differ from RL
    num_threads: Optional[int] = None
    """CPU threads for torch (None: torch's default)."""
    eval_every: int = 0
    """Evaluate every N steps (0: only before and after training)."""
    learning_rate: float = 3e-4
    """Peak learning rate of AdamW (3e-4 suits the embedded adder; large pretrained models want ~1e-5)."""
    max_steps: int = 0
    """Optimizer steps (0: derived from epochs: ceil(epochs × rows / batch_size)). The data order wraps into new epochs."""
    output_dir: str = "runs/sft"
    """Where metrics.jsonl, summary.json and the final checkpoint (OUTPUT_DIR/final) go."""

    # ----------------------------------------------------------------- offline runs
    train_limit: Optional[int] = None
    """Use only the first N rows of the training data (None: all)."""
    max_completion_tokens: int = 512
    """Longer completions (EOS included) are truncated from the right; a truncated one loses its EOS."""
    batch_size: int = 32
    """Examples per optimizer step."""
    epochs: float = 1.0
    """Passes over the training rows when max_steps is 0 (fractions allowed)."""

    def validate_own(self) -> None:
        need = self.need
        need(self.train_limit is None or self.train_limit >= 1, "train_limit", "must be >= 1 or None")
        need(self.max_completion_tokens >= 1, "max_completion_tokens", "must be >= 1")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.epochs > 0, "epochs", "must be > 0")
        need(self.max_steps >= 0, "max_steps", "must be >= 0 (0: derived from epochs)")

    def total_steps(self, num_rows: int) -> int:
        """Optimizer steps of the run for ``num_rows`` training examples."""
        return self.max_steps or max(1, math.ceil(self.epochs * num_rows / self.batch_size))


@dataclass
class SFTConfig(OfflineConfig):
    """The offline run fields (:class:`OfflineConfig`, over :class:`gspo.config.run.RunConfig`) plus SFT's own."""

    reference_column: Optional[str] = None
    """Row column holding the target completion. None: the first of reference, solution, canonical_solution, answer present."""

    def validate_own(self) -> None:
        super().validate_own()
        self.need(
            self.reference_column is None or bool(self.reference_column.strip()),
            "reference_column",
            "must name a column or be None",
        )


#: Defaults < YAML file < overrides, validated.
load_sft_config = config_loader(SFTConfig)


# ---------------------------------------------------------------------------------------- data
def pick_reference_column(rows: Sequence[dict[str, Any]], explicit: str | None = None) -> str:
    """The column SFT trains on: ``explicit``, else the first of ``REFERENCE_COLUMNS`` the rows have."""
    if not rows:
        raise ValueError("SFT: the train split has no rows")
    if explicit is not None:
        if not any(explicit in r for r in rows[:100]):
            raise ConfigError(
                "reference_column", f"the task's rows have no column {explicit!r} (columns: {sorted(rows[0])})"
            )
        return explicit
    for name in REFERENCE_COLUMNS:
        if any(_text(r.get(name)) for r in rows[:100]):
            return name
    raise ConfigError(
        "reference_column",
        f"the task's rows have none of {list(REFERENCE_COLUMNS)} (columns: {sorted(rows[0])}); name one explicitly",
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def build_examples(rows: Sequence[dict[str, Any]], column: str) -> tuple[list[dict[str, Any]], int]:
    """``([{"prompt", "completion", "row"}], skipped)``: rows with an empty reference are skipped."""
    examples, skipped = [], 0
    for row in rows:
        text = _text(row.get(column))
        if not text.strip():
            skipped += 1
            continue
        examples.append({"prompt": row["prompt"], "completion": text, "row": row})
    if not examples:
        raise ValueError(f"SFT: no row has a non-empty {column!r} reference")
    return examples, skipped


def encode_batch(
    tokenizer,
    examples: Sequence[dict[str, Any]],
    *,
    eos_id: int,
    pad_id: int,
    max_prompt_tokens: int | None = None,
    max_completion_tokens: int = 512,
):
    """Tensors ``(prompt_ids_BP, prompt_mask_BP, completion_ids_BT, completion_mask_BT)``.

    Prompts are left-padded as for sampling; completions are the reference tokens + EOS, right-padded.
    """
    import torch

    from gspo.sampling import encode_prompts

    p_ids, p_mask = encode_prompts(tokenizer, [e["prompt"] for e in examples], max_prompt_tokens=max_prompt_tokens)
    encoded = tokenizer([e["completion"] for e in examples], add_special_tokens=False)["input_ids"]
    rows = [(list(ids) + [eos_id])[:max_completion_tokens] for ids in encoded]
    width = max(len(r) for r in rows)
    c_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    c_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, ids in enumerate(rows):
        c_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        c_mask[b, : len(ids)] = 1
    return p_ids, p_mask, c_ids, c_mask


def _token_nll_sum(model, batch, device):
    """Sum of the completion tokens' negative log-likelihoods of one micro-batch, and their count."""
    import torch

    from gspo.sampling.scoring import completion_logprobs

    p_ids, p_mask, c_ids, c_mask = (t.to(device) for t in batch)
    logp, _ = completion_logprobs(model, p_ids, p_mask, c_ids, c_mask)
    mask = c_mask.bool()
    return -torch.where(mask, logp, 0.0).sum(), int(mask.sum())


def completion_loss(
    model,
    tokenizer,
    examples: Sequence[dict[str, Any]],
    *,
    batch_size: int = 64,
    max_prompt_tokens: int | None = None,
    max_completion_tokens: int = 512,
) -> float:
    """Mean per-token cross-entropy of the reference completions (+ EOS) under ``model`` (no gradient)."""
    import torch

    from gspo.sampling import special_token_ids

    eos_ids, pad_id = special_token_ids(tokenizer, model)
    from gspo.models.device import model_device

    device = model_device(model)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for lo in range(0, len(examples), batch_size):
            batch = encode_batch(
                tokenizer,
                examples[lo : lo + batch_size],
                eos_id=eos_ids[0],
                pad_id=pad_id,
                max_prompt_tokens=max_prompt_tokens,
                max_completion_tokens=max_completion_tokens,
            )
            nll, n = _token_nll_sum(model, batch, device)
            total, count = total + float(nll), count + n
    model.train(was_training)
    return total / max(count, 1)


# ---------------------------------------------------------------------------------------- trainer
class SFTTrainer:
    """Fine-tune ``model`` on ``(prompt, reference + EOS)`` pairs with AdamW; evaluate on ``eval_rows``.

    The run around the steps (evaluation, metrics, the final checkpoint, the summary) is shared with
    offline DPO (:class:`gspo.trainer.dpo.DPOTrainer`), which overrides ``train_step`` and ``data_summary``.
    """

    #: The run's kind, in summary.json ("algorithm") and the checkpoint's state.
    kind = "sft"

    def __init__(
        self,
        model,
        tokenizer,
        task,
        train_rows: Sequence[dict[str, Any]],
        config: OfflineConfig,
        *,
        eval_rows: Sequence[dict[str, Any]] | None = None,
    ):
        import torch

        from gspo.sampling import special_token_ids
        from gspo.trainer.data_order import PromptOrder
        from gspo.trainer.optim import build_optimizer, build_scheduler

        self.config = config.validate()
        self.model, self.tokenizer, self.task = model, tokenizer, task
        rows = list(train_rows)[: config.train_limit] if config.train_limit else list(train_rows)
        self.examples, self.skipped = self.build_examples(rows)
        self.eval_rows = list(eval_rows or [])
        from gspo.models.device import model_device

        self.device = model_device(model)
        eos_ids, self.pad_id = special_token_ids(tokenizer, model)
        self.eos_id = eos_ids[0]
        self.order = PromptOrder(len(self.examples), config.seed)
        self.max_steps = config.total_steps(len(self.examples))
        self.optimizer = build_optimizer(
            model.parameters(),
            kind="adamw",
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            betas=(0.9, 0.999),
            eps=1e-8,
            device=self.device,
        )
        self.scheduler = build_scheduler(
            self.optimizer, schedule=config.lr_schedule, warmup_steps=config.warmup_steps, total_steps=self.max_steps
        )
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = 0
        self.output_dir = Path(config.output_dir)
        self._torch = torch

    def evaluate(self) -> float | None:
        """Greedy held-out accuracy with the task's scorer (None when evaluation is off)."""
        if not self.eval_rows or self.config.eval_limit == 0:
            return None
        from gspo.evaluation import evaluate_task

        result = evaluate_task(
            self.model,
            self.tokenizer,
            self.task,
            self.eval_rows[: self.config.eval_limit],
            samples=1,
            greedy=True,
            max_new_tokens=self.config.eval_max_new_tokens,
            batch_size=max(self.config.micro_batch_size, 64),
            seed=self.config.seed,
        )
        self.model.train()
        return float(result.accuracy)

    def build_examples(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The training examples of ``rows`` and how many rows were skipped (SFT: by the reference column)."""
        self.column = pick_reference_column(rows, getattr(self.config, "reference_column", None))
        return build_examples(rows, self.column)

    def data_summary(self) -> dict[str, Any]:
        """What summary.json says about the training data (and a warning when references fail the scorer)."""
        ref_acc = self.reference_accuracy()
        if ref_acc < 1.0:
            logger.warning(
                "SFT: only %.0f%% of the %r references score 1.0 with the task's scorer", 100 * ref_acc, self.column
            )
        return {
            "train_examples": len(self.examples),
            "skipped_rows": self.skipped,
            "reference_column": self.column,
            "reference_accuracy": ref_acc,
        }

    def reference_accuracy(self, limit: int = 200) -> float:
        """Fraction of the first ``limit`` references that the task's own scorer accepts."""
        sample = self.examples[:limit]
        scores = self.task.score_batch([e["completion"] for e in sample], [e["row"] for e in sample])
        return sum(float(s) >= 1.0 for s in scores) / len(sample)

    def _finish_step(self, loss_sum: float, kind: str) -> tuple[Any, bool]:
        """Clip the accumulated gradient, step (or skip a non-finite step, with a warning), count the step."""
        torch, cfg = self._torch, self.config
        max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        skipped = not (torch.isfinite(grad_norm) and math.isfinite(loss_sum))
        if skipped:
            logger.warning("%s step %d: non-finite loss or gradient; optimizer step skipped", kind, self.step + 1)
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return grad_norm, skipped

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on the next ``batch_size`` examples; returns its metrics."""
        cfg = self.config
        t0 = time.perf_counter()
        batch = [self.examples[i] for i in self.order.take(cfg.batch_size)]
        micro = [
            encode_batch(
                self.tokenizer,
                batch[lo : lo + cfg.micro_batch_size],
                eos_id=self.eos_id,
                pad_id=self.pad_id,
                max_prompt_tokens=cfg.max_prompt_tokens,
                max_completion_tokens=cfg.max_completion_tokens,
            )
            for lo in range(0, len(batch), cfg.micro_batch_size)
        ]
        n_tokens = sum(int(m[3].sum()) for m in micro)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for mb in micro:
            nll, _ = _token_nll_sum(self.model, mb, self.device)
            (nll / n_tokens).backward()
            loss_sum += float(nll.detach())
        grad_norm, skipped = self._finish_step(loss_sum, "sft")
        seconds = time.perf_counter() - t0
        return {
            "loss": loss_sum / n_tokens,
            "grad_norm": float(grad_norm),
            "lr": self.scheduler.get_last_lr()[0],
            "tokens": n_tokens,
            "examples_seen": self.step * cfg.batch_size,
            "skipped_step": int(skipped),
            "tokens_per_s": n_tokens / max(seconds, 1e-9),
            "time/step": seconds,
        }

    def train(self) -> dict[str, Any]:
        """The whole run: evaluate, train ``max_steps`` steps (evaluating every ``eval_every``), save, evaluate."""
        from gspo.trainer.progress import library_bars_off

        with library_bars_off():
            return self._train()

    def _train(self) -> dict[str, Any]:
        from gspo.trainer import checkpoint as ckpt
        from gspo.trainer.metrics import MetricsLogger
        from gspo.trainer.progress import Progress

        cfg = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        log = MetricsLogger(self.output_dir, report_to=cfg.report_to, run_config=dataclasses.asdict(cfg))
        start = time.perf_counter()
        data = self.data_summary()
        eval_before = self.evaluate()
        losses: list[float] = []
        bar = Progress(self.max_steps, desc=self.kind, enabled=cfg.progress)
        try:
            while self.step < self.max_steps:
                metrics = self.train_step()
                losses.append(metrics["loss"])
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < self.max_steps:
                    metrics["eval/accuracy"] = self.evaluate()
                if self.step % cfg.log_every == 0 or self.step == self.max_steps:
                    log.log(self.step, metrics)
                bar.update(metrics)
        finally:
            bar.close()
        eval_after = self.evaluate()
        if eval_after is not None:
            log.log(self.step, {"eval/accuracy": eval_after})
        log.close()
        state = {
            "kind": self.kind,
            "step": self.step,
            "eval_before": eval_before,
            "eval_after": eval_after,
            "config": dataclasses.asdict(cfg),
        }
        ckpt.save_checkpoint(self.output_dir / "final", self.model, self.tokenizer, state)
        summary = {
            "eval_before": eval_before,
            "eval_after": eval_after,
            "steps": self.step,
            "examples_seen": self.step * cfg.batch_size,
            **data,
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
            "train_seconds": time.perf_counter() - start,
            "algorithm": self.kind,
            "model": cfg.model,
            "task": cfg.task,
            "seed": cfg.seed,
        }
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def build_sft_trainer(config: SFTConfig) -> SFTTrainer:
    """Task, rows, then the model (the order that fails fastest), as ``build_trainer`` does for RL."""
    from gspo.models.loading import load_model_and_tokenizer
    from gspo.trainer.build import build_task, load_rows, setup_run, wants_chat

    device = setup_run(config)
    task = build_task(config)
    model, tokenizer = load_model_and_tokenizer(config.model, dtype=config.dtype, device=str(device))
    chat = wants_chat(config, tokenizer)
    train_rows = load_rows(task, config, config.train_split, chat=chat, limit=config.train_limit)
    eval_rows = (
        load_rows(task, config, config.eval_split, chat=chat, limit=config.eval_limit) if config.eval_limit else []
    )
    trainer = SFTTrainer(model, tokenizer, task, train_rows, config, eval_rows=eval_rows)
    logger.info(
        "sft: model %s on %s; task %s: %d examples (column %r), %d eval rows; %d steps of %d",
        config.model,
        device,
        config.task,
        len(trainer.examples),
        trainer.column,
        len(eval_rows),
        trainer.max_steps,
        config.batch_size,
    )
    return trainer
