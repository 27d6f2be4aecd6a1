"""Offline DPO: ``gspo dpo --data pairs.jsonl``, preference pairs from a file, with ``gspo sft``'s conventions.

    gspo dpo --data pairs.jsonl --max-steps 40 --output-dir runs/dpo
    gspo train --model runs/dpo/final            # RL from the DPO-tuned weights

**Data**: a JSONL file, one pair per line: ``{"prompt": ..., "chosen": ..., "rejected": ...}``; the
prompt a string (wrapped in a user message when the chat template is used, as task prompts are) or a
list of chat messages; ``chosen`` and ``rejected`` strings. A missing column, a value of the wrong
type or ``chosen == rejected`` is a ``DataError`` naming the file and line, raised before any model
loads.

**Everything else is SFT's** (:mod:`gspo.trainer.sft`; the run is an :class:`SFTTrainer` with another
step): the same fields (:class:`gspo.trainer.sft.OfflineConfig`: ``batch_size`` pairs per optimizer
step, ``epochs`` / ``max_steps``, ``train_limit``, ``max_completion_tokens``), the same encoding (the
prompt as for sampling, the completion + EOS, truncated from the right), the same data order
(``PromptOrder(seed)``), the same evaluation of the task's held-out split (``task`` names the task
whose held-out accuracy is reported, before and after), outputs (``metrics.jsonl``, ``summary.json``,
``final/``) and ``--config`` / ``--field value`` conventions.

**Loss**: DPO's sigmoid loss (:func:`gspo.losses.dpo_loss`, β = ``beta``) on the completions' log-probs
summed over their tokens (EOS included), averaged over the step's pairs: each micro-batch's share is
divided by the step's pair count, so the micro-batch size does not change the result. The reference
is the starting model: its log-probs of every pair are computed once, before the first step (no second
copy of the weights is kept; TRL's ``precompute_ref_log_probs``). Logged per step: ``loss``,
``reward_margin``, ``reward_accuracy``, ``chosen_reward``, ``rejected_reward``, ``grad_norm``, ``lr``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from gspo.config.run import config_loader
from gspo.trainer.sft import OfflineConfig, SFTTrainer, encode_batch

logger = logging.getLogger("gspo")

#: The columns of a pairs file and their types.
PAIR_COLUMNS: dict[str, Any] = {"prompt": (str, list), "chosen": str, "rejected": str}


@dataclass
class DPOConfig(OfflineConfig):
    """The offline run fields (:class:`gspo.trainer.sft.OfflineConfig`) plus DPO's own."""

    output_dir: str = "runs/dpo"
    """Where metrics.jsonl, summary.json and the final checkpoint (OUTPUT_DIR/final) go."""
    learning_rate: float = 1e-4
    """Peak learning rate of AdamW (1e-4 suits the embedded adder; large pretrained models want ~5e-7 to 1e-6)."""
    batch_size: int = 32
    """Pairs per optimizer step."""
    data: Optional[str] = None
    """The preference pairs: a JSONL file of {"prompt", "chosen", "rejected"} rows (required)."""
    beta: float = 0.1
    """β of DPO: the implicit reward is β·(log π_θ − log π_ref) of a completion."""

    def validate_own(self) -> None:
        super().validate_own()
        need = self.need
        need(self.data is not None, "data", "must name a JSONL file of prompt / chosen / rejected rows")
        assert self.data is not None
        need(_is_file(self.data), "data", "must be an existing file")
        need(self.beta > 0, "beta", "must be > 0")


def _is_file(name: str) -> bool:
    try:
        return Path(name).expanduser().is_file()
    except (RuntimeError, OSError, ValueError):  # '~nosuchuser/...', a name the OS refuses
        return False


#: Defaults < YAML file < overrides, validated.
load_dpo_config = config_loader(DPOConfig)


def read_pairs(path: str | Path, *, chat: bool = False) -> list[dict[str, Any]]:
    """The pairs of a JSONL file as ``{"prompt", "chosen", "rejected", "where"}``; DataError on a bad row."""
    from gspo.tasks.io import DataError, make_prompt, read_jsonl

    pairs = []
    for where, row in read_jsonl(Path(path).expanduser(), PAIR_COLUMNS):
        if row["chosen"] == row["rejected"]:
            raise DataError(f"{where}: 'chosen' and 'rejected' are the same text (a pair must differ)")
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = make_prompt(prompt, chat)
        elif not all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt):
            raise DataError(f"{where}: a list 'prompt' must hold chat messages ({{'role', 'content'}} objects)")
        pairs.append({"prompt": prompt, "chosen": row["chosen"], "rejected": row["rejected"], "where": where})
    return pairs


class DPOTrainer(SFTTrainer):
    """DPO on ``(prompt, chosen, rejected)`` pairs against the starting model; SFT's run around it."""

    kind = "dpo"

    def __init__(self, model, tokenizer, task, pairs: Sequence[dict[str, Any]], config: DPOConfig, *, eval_rows=None):
        super().__init__(model, tokenizer, task, pairs, config, eval_rows=eval_rows)
        self.beta = config.beta
        self.ref_chosen_N, self.ref_rejected_N = self._reference_sums()

    def build_examples(self, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        if not rows:
            raise ValueError("DPO: the pairs file has no rows")
        return list(rows), 0

    def data_summary(self) -> dict[str, Any]:
        return {"train_pairs": len(self.examples), "data": getattr(self.config, "data", None), "beta": self.beta}

    def _encode(self, pairs: Sequence[dict[str, Any]]):
        """One batch of 2k rows: the k chosen completions, then the k rejected ones."""
        rows = [{"prompt": p["prompt"], "completion": p[side]} for side in ("chosen", "rejected") for p in pairs]
        cfg = self.config
        return encode_batch(
            self.tokenizer,
            rows,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            max_prompt_tokens=cfg.max_prompt_tokens,
            max_completion_tokens=cfg.max_completion_tokens,
        )

    def _logp_sums(self, batch):
        """``[2k]`` completion log-probs summed over their tokens (EOS included)."""
        torch = self._torch
        from gspo.sampling.scoring import completion_logprobs

        p_ids, p_mask, c_ids, c_mask = (t.to(self.device) for t in batch)
        logp, _ = completion_logprobs(self.model, p_ids, p_mask, c_ids, c_mask)
        return torch.where(c_mask.bool(), logp, 0.0).sum(-1)

    def _micro_batches(self, items: Sequence[Any]) -> list[Sequence[Any]]:
        per = max(1, self.config.micro_batch_size // 2)  # pairs per micro-batch: 2 rows each
        return [items[lo : lo + per] for lo in range(0, len(items), per)]

    def _reference_sums(self):
        """The starting model's summed log-probs of every pair's completions (no gradient)."""
        torch = self._torch
        chosen, rejected = [], []
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            for part in self._micro_batches(self.examples):
                sums = self._logp_sums(self._encode(part))
                chosen.append(sums[: len(part)])
                rejected.append(sums[len(part) :])
        self.model.train(was_training)
        return torch.cat(chosen), torch.cat(rejected)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step on the next ``batch_size`` pairs; returns its metrics."""
        from gspo.losses import dpo_loss

        cfg = self.config
        t0 = time.perf_counter()
        idx = self.order.take(cfg.batch_size)
        n = len(idx)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, sums = 0.0, dict[str, float]()
        for part in self._micro_batches(idx):
            k = len(part)
            seq = self._logp_sums(self._encode([self.examples[i] for i in part]))
            ref_c, ref_r = (r[list(part)].to(seq.dtype) for r in (self.ref_chosen_N, self.ref_rejected_N))
            loss, stats = dpo_loss(seq[:k], seq[k:], ref_c, ref_r, beta=self.beta)
            (loss * k / n).backward()
            loss_sum += float(loss.detach()) * k
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + float(value) * k
        grad_norm, skipped = self._finish_step(loss_sum, "dpo")
        seconds = time.perf_counter() - t0
        return {
            "loss": loss_sum / n,
            **{key: value / n for key, value in sums.items()},
            "grad_norm": float(grad_norm),
            "lr": self.scheduler.get_last_lr()[0],
            "pairs": n,
            "examples_seen": self.step * cfg.batch_size,
            "skipped_step": int(skipped),
            "time/step": seconds,
        }


def build_dpo_trainer(config: DPOConfig) -> DPOTrainer:
    """Pairs (read and checked before any model loads), the task for evaluation, then the model."""
    from gspo.models.loading import load_model_and_tokenizer
    from gspo.trainer.build import build_task, load_rows, setup_run, wants_chat

    device = setup_run(config)
    assert config.data is not None
    read_pairs(config.data)  # a bad file fails here, before the model loads
    task = build_task(config)
    model, tokenizer = load_model_and_tokenizer(config.model, dtype=config.dtype, device=str(device))
    chat = wants_chat(config, tokenizer)
    pairs = read_pairs(config.data, chat=chat)
    eval_rows = (
        load_rows(task, config, config.eval_split, chat=chat, limit=config.eval_limit) if config.eval_limit else []
    )
    trainer = DPOTrainer(model, tokenizer, task, pairs, config, eval_rows=eval_rows)
    logger.info(
        "dpo: model %s on %s; %d pairs from %s, beta %g; task %s: %d eval rows; %d steps of %d",
        config.model,
        device,
        len(trainer.examples),
        config.data,
        config.beta,
        config.task,
        len(eval_rows),
        trainer.max_steps,
        config.batch_size,
    )
    return trainer
