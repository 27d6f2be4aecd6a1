"""``gspo eval``: evaluate a model (and optionally a second one) on one or more tasks.

    gspo eval --model runs/addition/final --task addition --samples 8 --compare embedded

Prints the per-task table and writes ``eval.json`` (numbers, settings, every completion) and
``eval.md`` (the tables) to ``--output``. Decoding is greedy with one sample unless a temperature is
given; with ``--samples K > 1`` it samples at ``--temperature`` (default 1.0) and reports pass@1 and
pass@K. Heavy imports happen inside :func:`run`, so ``gspo eval --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gspo.cli.main import CLIError

CHAT_CHOICES = ("auto", "yes", "no")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on tasks: accuracy and pass@k",
        description="Evaluate a model on one or more tasks with the training sampler and each task's scorer; "
        "print a table and write eval.json and eval.md.",
    )
    p.add_argument("--model", default="embedded", metavar="PATH",
                   help="model to evaluate: a local Hugging Face folder (e.g. a training checkpoint), "
                        "'embedded' (the built-in adder) or 'smollm2' (default: %(default)s)")
    p.add_argument("--task", default="addition", metavar="NAME[,NAME2]",
                   help="task name(s), comma separated (default: %(default)s)")
    p.add_argument("--split", default="test", help="dataset split to evaluate (default: %(default)s)")
    p.add_argument("--data-path", default=None, metavar="P",
                   help="override the task's data source (file or folder; one task only)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N rows of each task")
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="completions per prompt; K > 1 samples and reports pass@1 and pass@K (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling temperature; 0 means greedy. Default: greedy with --samples 1, else 1.0")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling threshold (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="top-k sampling, 0 disables (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="completion length limit (default: each task's own)")
    p.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                   help="truncate longer prompts from the left (default: no limit)")
    p.add_argument("--batch-size", type=int, default=32, metavar="B",
                   help="sequences generated together (default: %(default)s)")
    p.add_argument("--chat", choices=CHAT_CHOICES, default="auto",
                   help="format prompts as chat messages: auto uses the chat template when the tokenizer "
                        "has one (default: %(default)s)")
    p.add_argument("--compare", default=None, metavar="PATH2",
                   help="a second model evaluated on the same rows and settings, reported side by side")
    p.add_argument("--output", default="outputs/eval", metavar="DIR",
                   help="folder for eval.json and eval.md (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"),
                   help="model weights dtype; auto keeps the checkpoint's (default: %(default)s)")
    p.add_argument("--progress", action="store_true", help="show a progress bar per task")
    return p


def _load_model(name: str, *, dtype: str, device: str):
    """``(model, tokenizer)`` via :func:`gspo.models.loading.load_model_and_tokenizer`; errors become CLIError."""
    from gspo.models.loading import load_model_and_tokenizer

    try:
        return load_model_and_tokenizer(name, dtype=dtype, device=device)
    except (OSError, ValueError) as exc:  # ModelLoadError is an OSError
        raise CLIError(f"cannot load model {name!r}: {exc}") from exc


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _decoding(args) -> tuple[bool, float]:
    """``(greedy, temperature)`` from --samples and --temperature."""
    if args.samples < 1:
        raise CLIError(f"--samples must be >= 1, got {args.samples}")
    t = args.temperature
    if t is not None and t < 0:
        raise CLIError(f"--temperature must be >= 0, got {t}")
    if t == 0 or (t is None and args.samples == 1):
        if args.samples > 1:
            raise CLIError("--temperature 0 (greedy) with --samples > 1 would repeat one completion; give T > 0")
        return True, 1.0
    return False, 1.0 if t is None else t


def _load_rows(names: list[str], args, *, chat: bool) -> list[tuple[Any, list[dict]]]:
    from gspo.tasks import get_task

    out = []
    for name in names:
        try:
            task = get_task(name)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
        try:
            rows = task.load(args.split, path=args.data_path, limit=args.limit, chat=chat)
        except (ValueError, OSError) as exc:  # DataError is a ValueError
            raise CLIError(f"task {name!r}: {exc}") from exc
        if not rows:
            raise CLIError(f"task {name!r}: split {args.split!r} has no rows")
        out.append((task, rows))
    return out


def _use_chat(args, tokenizer, name: str) -> bool:
    from gspo.sampling import has_chat_template

    if args.chat == "yes" and not has_chat_template(tokenizer):
        raise CLIError(f"--chat yes but the tokenizer of {name!r} has no chat template")
    return args.chat == "yes" or (args.chat == "auto" and has_chat_template(tokenizer))


def _evaluate_model(model, tokenizer, tasks, args, greedy: bool, temperature: float, label: str):
    from gspo.evaluation import evaluate_task

    results = []
    for task, rows in tasks:
        print(f"[eval] {label}: {task.name} ({len(rows)} rows x {args.samples} samples)", file=sys.stderr)
        try:
            results.append(evaluate_task(
                model, tokenizer, task, rows,
                samples=args.samples, greedy=greedy, temperature=temperature, top_p=args.top_p,
                top_k=args.top_k, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                seed=args.seed, max_prompt_tokens=args.max_prompt_tokens, progress=args.progress,
            ))
        except ValueError as exc:  # e.g. chat prompts with a tokenizer that has no template
            raise CLIError(f"task {task.name!r}: {exc}") from exc
    return results


def run(args) -> int:
    names = [n.strip() for n in args.task.split(",") if n.strip()]
    if not names:
        raise CLIError("--task names no task")
    if args.data_path is not None and len(names) > 1:
        raise CLIError("--data-path applies to one task; evaluate tasks one at a time")
    for flag, value in (("--batch-size", args.batch_size), ("--limit", args.limit), ("--max-new-tokens", args.max_new_tokens)):
        if value is not None and value < 1:
            raise CLIError(f"{flag} must be >= 1, got {value}")
    greedy, temperature = _decoding(args)
    from gspo.tasks import TASK_REGISTRY

    unknown = [n for n in names if n not in TASK_REGISTRY]
    if unknown:  # before loading any model
        raise CLIError(f"unknown task {unknown[0]!r}; valid tasks: {sorted(TASK_REGISTRY)}")

    from gspo.evaluation import report_markdown, write_report

    device = _resolve_device(args.device)
    t0 = time.perf_counter()
    model, tokenizer = _load_model(args.model, dtype=args.dtype, device=device)
    chat = _use_chat(args, tokenizer, args.model)
    tasks = _load_rows(names, args, chat=chat)
    results = _evaluate_model(model, tokenizer, tasks, args, greedy, temperature, args.model)

    compare = None
    if args.compare is not None:
        del model, tokenizer
        model_b, tokenizer_b = _load_model(args.compare, dtype=args.dtype, device=device)
        chat_b = _use_chat(args, tokenizer_b, args.compare)
        # the same rows; with --chat auto each model gets the prompt format its tokenizer supports
        tasks_b = tasks if chat_b == chat else _load_rows(names, args, chat=chat_b)
        compare = _evaluate_model(model_b, tokenizer_b, tasks_b, args, greedy, temperature, args.compare)

    settings = dict(
        model=args.model, compare=args.compare, tasks=names, split=args.split, data_path=args.data_path,
        limit=args.limit, samples=args.samples, greedy=greedy, temperature=temperature, top_p=args.top_p,
        top_k=args.top_k, max_new_tokens=args.max_new_tokens, max_prompt_tokens=args.max_prompt_tokens,
        batch_size=args.batch_size, chat=args.chat, seed=args.seed, device=device, dtype=args.dtype,
    )
    json_path, md_path = write_report(
        args.output, results, model=args.model, settings=settings, compare=compare, compare_model=args.compare
    )
    print(report_markdown(results, model=args.model, compare=compare, compare_model=args.compare), end="")
    print(f"[eval] wrote {json_path} and {md_path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0
