"""Evaluate a model on a task: accuracy, unbiased pass@k, timing and token counts.

Generation uses the training sampler (:func:`gspo.sampling.sample`) and scoring the task's own
``score_batch``, so evaluation measures exactly what RL optimises.

- ``accuracy``: the mean score of the first sample of every row (with ``samples=1`` the default is
  greedy decoding, so this is greedy accuracy);
- ``pass@k`` (only with ``samples > 1``, for k in {1, samples}): the unbiased estimator of Chen et al.
  (2021) averaged over rows, a sample counting as correct when its score is ``>= correct_threshold``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gspo.models.device import model_device
from gspo.sampling import decode_completions, encode_prompts, sample, special_token_ids


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Computed as ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``, which never forms the (huge) binomials.
    """
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass
class EvalResult:
    """The outcome of :func:`evaluate_task` on one task. ``scores[i][j]``: row i, sample j."""

    task: str
    n: int
    samples: int
    accuracy: float
    pass_at_k: dict[int, float]
    scores: list[list[float]]
    completions: list[list[str]]
    ids: list[Any]
    seconds: float
    generation_seconds: float
    scoring_seconds: float
    prompt_tokens: int
    completion_tokens: int
    finished_fraction: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The headline numbers (no per-row data), JSON-ready."""
        out: dict[str, Any] = {
            "task": self.task,
            "n": self.n,
            "samples": self.samples,
            "accuracy": self.accuracy,
        }
        out.update({f"pass@{k}": v for k, v in sorted(self.pass_at_k.items())})
        out.update(
            seconds=self.seconds,
            generation_seconds=self.generation_seconds,
            scoring_seconds=self.scoring_seconds,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            tokens_per_second=self.tokens_per_second,
            finished_fraction=self.finished_fraction,
            settings=dict(self.settings),
        )
        return out

    def to_dict(self, *, include_rows: bool = True) -> dict[str, Any]:
        """:meth:`summary` plus, with ``include_rows``, every row's id, scores and completions."""
        out = self.summary()
        if include_rows:
            out["rows"] = [
                {"id": _jsonable(i), "scores": s, "completions": c}
                for i, s, c in zip(self.ids, self.scores, self.completions)
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        rows = data.get("rows", [])
        return cls(
            task=data["task"],
            n=data["n"],
            samples=data["samples"],
            accuracy=data["accuracy"],
            pass_at_k={int(k[5:]): v for k, v in data.items() if k.startswith("pass@")},
            scores=[r["scores"] for r in rows],
            completions=[r["completions"] for r in rows],
            ids=[r["id"] for r in rows],
            seconds=data["seconds"],
            generation_seconds=data.get("generation_seconds", data["seconds"]),
            scoring_seconds=data.get("scoring_seconds", 0.0),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            finished_fraction=data.get("finished_fraction", 1.0),
            settings=data.get("settings", {}),
        )


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def evaluate_task(
    model,
    tokenizer,
    task,
    rows: Sequence[dict[str, Any]],
    *,
    samples: int = 1,
    greedy: bool | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    max_prompt_tokens: int | None = None,
    correct_threshold: float = 1.0,
    progress: bool = False,
) -> EvalResult:
    """Generate ``samples`` completions per row with the training sampler and score them with ``task``.

    ``greedy`` defaults to ``samples == 1`` (greedy with several samples is refused: they would be
    identical). ``max_new_tokens`` defaults to the task's own. ``batch_size`` counts sequences per
    generation call (a row's samples may span batches). A seeded generator makes the result
    reproducible for a given ``batch_size``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if greedy is None:
        greedy = samples == 1
    if greedy and samples > 1:
        raise ValueError("greedy decoding with samples > 1 gives identical samples; sample with a temperature")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not rows:
        raise ValueError(f"task {getattr(task, 'name', task)!r}: no rows to evaluate")
    max_new_tokens = int(max_new_tokens or getattr(task, "max_new_tokens", 256) or 256)
    eos_ids, pad_id = special_token_ids(tokenizer, model)
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)

    # every row repeated `samples` times, consecutively: flat index = row * samples + j
    flat_rows = [row for row in rows for _ in range(samples)]
    flat_completions: list[str] = []
    prompt_tokens = completion_tokens = finished = 0

    from tqdm.auto import tqdm

    start = time.perf_counter()
    for lo in tqdm(
        range(0, len(flat_rows), batch_size),
        desc=f"eval {getattr(task, 'name', '')}",
        disable=not progress,
        leave=False,
    ):
        batch = flat_rows[lo : lo + batch_size]
        ids_BP, mask_BP = encode_prompts(tokenizer, [r["prompt"] for r in batch], max_prompt_tokens=max_prompt_tokens)
        rollout = sample(
            model,
            ids_BP,
            mask_BP,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            eos_token_ids=eos_ids,
            pad_token_id=pad_id,
            generator=generator,
            greedy=greedy,
        )
        flat_completions.extend(decode_completions(tokenizer, rollout))
        prompt_tokens += int(mask_BP.sum())
        completion_tokens += rollout.num_completion_tokens
        finished += int(rollout.finished_B.sum())
    generation_seconds = time.perf_counter() - start

    score_start = time.perf_counter()
    flat_scores = [float(s) for s in task.score_batch(flat_completions, flat_rows)]
    scoring_seconds = time.perf_counter() - score_start
    if len(flat_scores) != len(flat_rows):
        raise RuntimeError(f"task {task.name!r}: score_batch returned {len(flat_scores)} scores for {len(flat_rows)}")

    scores = [flat_scores[i * samples : (i + 1) * samples] for i in range(len(rows))]
    completions = [flat_completions[i * samples : (i + 1) * samples] for i in range(len(rows))]
    accuracy = sum(s[0] for s in scores) / len(rows)
    pass_k: dict[int, float] = {}
    if samples > 1:
        for k in sorted({1, samples}):
            pass_k[k] = sum(pass_at_k(samples, sum(x >= correct_threshold for x in s), k) for s in scores) / len(rows)
    settings = dict(
        greedy=greedy,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        max_prompt_tokens=max_prompt_tokens,
        correct_threshold=correct_threshold,
    )
    return EvalResult(
        task=getattr(task, "name", type(task).__name__),
        n=len(rows),
        samples=samples,
        accuracy=accuracy,
        pass_at_k=pass_k,
        scores=scores,
        completions=completions,
        ids=[r.get("id", i) for i, r in enumerate(rows)],
        seconds=generation_seconds + scoring_seconds,
        generation_seconds=generation_seconds,
        scoring_seconds=scoring_seconds,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finished_fraction=finished / len(flat_rows),
        settings=settings,
    )


__all__ = ["EvalResult", "evaluate_task", "pass_at_k"]
