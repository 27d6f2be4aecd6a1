"""Evaluation on an environment: one greedy episode per held-out row, the share the environment counts
as solved, and how the episodes went (turns, tool calls and errors, tokens per turn, how they ended).

:func:`evaluate_environment` is what training's evaluation (:class:`gspo.trainer.episodes.EpisodeTrainer`)
and ``gspo eval --environment NAME`` both call; :func:`run_environment_eval` is the latter: rows from the
environment (``rows``) or from ``--task``, then a table per model (``--compare`` adds a second) and
``eval.json`` with the settings, the figures and every episode (its replies, rewards and outcome).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gspo.environments.base import Episode
from gspo.environments.formatting import TurnFormat
from gspo.environments.guard import GuardedEnvironment
from gspo.sampling.episodes import EpisodeLimits, run_episodes

__all__ = ["EnvironmentEval", "evaluate_environment", "run_environment_eval", "summarize_episodes"]


@dataclass
class EnvironmentEval:
    """Greedy episodes of some rows: the solved share, the episode metrics and the episodes."""

    solved: float
    metrics: dict[str, float]
    episodes: list[Episode] = field(default_factory=list)

    def records(self, env: GuardedEnvironment) -> list[dict[str, Any]]:
        return [
            {
                "id": e.row.get("id"),
                "replies": e.replies,
                "turn_rewards": e.turn_rewards,
                "final_reward": e.final_reward,
                "solved": env.solved(e),
                "done": e.done,
                "truncated": e.truncated,
                "tool_calls": e.tool_calls,
                "tool_errors": e.tool_errors,
                "error": e.error,
            }
            for e in self.episodes
        ]


def summarize_episodes(episodes: list[Episode]) -> dict[str, float]:
    """Turns, tool calls and errors, tokens per model turn, how episodes ended (host floats)."""
    n = max(len(episodes), 1)
    turn_tokens = [t for e in episodes for t in e.turn_tokens]
    return {
        "episodes/turns_mean": sum(e.turns for e in episodes) / n,
        "episodes/turns_max": float(max((e.turns for e in episodes), default=0)),
        "episodes/tool_calls_mean": sum(e.tool_calls for e in episodes) / n,
        "episodes/tool_call_frac": sum(e.tool_calls > 0 for e in episodes) / n,
        "episodes/tool_errors_mean": sum(e.tool_errors for e in episodes) / n,
        "episodes/tokens_per_turn": statistics.fmean(turn_tokens) if turn_tokens else 0.0,
        "episodes/done_frac": sum(e.done for e in episodes) / n,
        "episodes/turn_limit_frac": sum(e.truncated == "turns" for e in episodes) / n,
        "episodes/token_limit_frac": sum(e.truncated == "tokens" for e in episodes) / n,
        "episodes/env_errors": float(sum(e.truncated == "error" for e in episodes)),
        "episodes/final_reward_mean": sum(e.final_reward for e in episodes) / n,
    }


def evaluate_environment(
    model,
    tokenizer,
    env: GuardedEnvironment,
    rows: list[dict[str, Any]],
    *,
    limits: EpisodeLimits,
    fmt: TurnFormat,
    eos_token_ids: list[int],
    pad_token_id: int,
    batch_size: int = 64,
    seed: int = 0,
    max_prompt_tokens: int | None = None,
) -> EnvironmentEval:
    """One greedy episode per row, ``batch_size`` episodes at a time."""
    from gspo.models.device import model_device

    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    episodes: list[Episode] = []
    for start in range(0, len(rows), batch_size):
        played = run_episodes(
            model, tokenizer, env, rows[start : start + batch_size], group_size=1, limits=limits, fmt=fmt,
            eos_token_ids=eos_token_ids, pad_token_id=pad_token_id, greedy=True, generator=generator,
            max_prompt_tokens=max_prompt_tokens, device=device,
        )  # fmt: skip
        episodes += played.episodes
    solved = [env.solved(e) for e in episodes]
    metrics = summarize_episodes(episodes)
    metrics["solved"] = sum(solved) / max(len(solved), 1)
    return EnvironmentEval(metrics["solved"], metrics, episodes)


# ---------------------------------------------------------------------------------------------- gspo eval
def _fail(message: str):
    from gspo.cli.main import CLIError

    raise CLIError(message)


def _plan(args):
    """The guarded environment and its rows' source (the environment's, or --task's), before any model loads."""
    from gspo.config.run import parse_task_options
    from gspo.environments import load_environment

    try:
        options = parse_task_options(args.environment_options, "--environment-options")
        env = load_environment(args.environment, options)
    except ValueError as exc:
        _fail(str(exc))
    split = args.split or "test"
    own = getattr(env, "rows", None)
    try:
        rows = own(split, args.limit) if own is not None else None
    except ValueError as exc:
        _fail(str(exc))
    item = None
    if rows is None:
        from gspo.cli.eval import _plan_tasks

        items = _plan_tasks(args)
        if len(items) != 1:
            _fail("--environment takes one --task")
        item = items[0]
        env.task = item.task
    return env, rows, item


def run_environment_eval(args) -> int:
    """``gspo eval --environment NAME [--task T] [--compare M]``: tables and eval.json (module docstring)."""
    from gspo.cli.eval import _load_model, _load_rows, _resolve_device, _use_chat
    from gspo.sampling import special_token_ids

    env, rows, item = _plan(args)
    guarded = GuardedEnvironment(env, timeout_s=args.environment_timeout_s or None, on_error="end")
    limits = EpisodeLimits(
        args.max_turns, args.max_turn_tokens or args.max_new_tokens or 256, args.max_new_tokens or 256
    )
    device = _resolve_device(args.device)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    for name in [args.model] + ([args.compare] if args.compare else []):
        model, tokenizer = _load_model(name, dtype=args.dtype, device=device)
        chat = _use_chat(args, tokenizer, name)
        these = rows if rows is not None else _load_rows([item], chat=chat)[0][1]
        eos, pad = special_token_ids(tokenizer, model)
        print(f"[eval] {name}: {guarded.name} ({len(these)} episodes)", file=sys.stderr)
        result = evaluate_environment(
            model, tokenizer, guarded, these, limits=limits, fmt=TurnFormat(tokenizer, chat=chat),
            eos_token_ids=eos, pad_token_id=pad, batch_size=args.batch_size or 64, seed=args.seed,
            max_prompt_tokens=args.max_prompt_tokens,
        )  # fmt: skip
        results.append({"model": name, "metrics": result.metrics, "episodes": result.records(guarded)})
        del model, tokenizer
    table = _table(results, guarded.name)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))}
    (out / "eval.json").write_text(json.dumps({"settings": settings, "results": results}, indent=1, default=str))
    (out / "eval.md").write_text(table)
    print(table, end="")
    print(f"[eval] wrote {out / 'eval.json'} and {out / 'eval.md'} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def _table(results: list[dict[str, Any]], env_name: str) -> str:
    keys = ("solved", "episodes/tool_call_frac", "episodes/turns_mean", "episodes/tool_errors_mean",
            "episodes/tokens_per_turn", "episodes/turn_limit_frac", "episodes/token_limit_frac")  # fmt: skip
    lines = [f"| model ({env_name}) | " + " | ".join(k.removeprefix("episodes/") for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]  # fmt: skip
    for r in results:
        lines.append(f"| {r['model']} | " + " | ".join(f"{r['metrics'][k]:.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"
