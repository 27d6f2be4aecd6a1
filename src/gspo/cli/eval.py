"""``gspo eval``: evaluate a model (and optionally a second one) on one or more tasks, or on a suite.

    gspo eval --model runs/addition/final --task addition --samples 8 --compare embedded
    gspo eval --model smollm2 --task reasoning_gym --task-options '{"dataset": "chain_sum"}'
    gspo eval --model smollm2 --suite core --compare runs/arith/final      # --limit 5: a quick look

Prints the per-task table and writes ``eval.json`` (numbers, settings, every completion) and
``eval.md`` (the tables) to ``--output``. A suite (:mod:`gspo.evaluation.suite`; ``core`` ships with
the package, ``--suite-file`` reads others) names its tasks with their categories, splits, limits and
options; the report adds the mean of each category and the overall mean, and ``--limit N`` caps every
task. The suite and every task's options are checked before any model loads. Decoding is greedy with one sample unless a temperature is
given; with ``--samples K > 1`` it samples at ``--temperature`` (default 1.0) and reports pass@1 and
pass@K. Heavy imports happen inside :func:`run`, so ``gspo eval --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

from gspo.cli.main import CLIError

CHAT_CHOICES = ("auto", "yes", "no")
DEFAULT_TASK, DEFAULT_SPLIT = "addition", "test"


@dataclass
class EvalItem:
    """One task to evaluate: the report's label, the task object, and where and how much to read."""

    label: str
    task: Any
    split: str
    data_path: str | None = None
    limit: int | None = None
    max_new_tokens: int | None = None
    category: str | None = None


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on tasks: accuracy and pass@k",
        description="Evaluate a model on one or more tasks (or a suite of tasks with categories, e.g. --suite core) "
        "with the training sampler and each task's scorer; print the tables and write eval.json and eval.md.",
    )
    p.add_argument(
        "--model",
        default="embedded",
        metavar="PATH",
        help="model to evaluate: a local Hugging Face folder (e.g. a training checkpoint), "
        "'embedded' (the built-in adder) or 'smollm2' (default: %(default)s)",
    )
    p.add_argument(
        "--task", default=None, metavar="NAME[,NAME2]", help=f"task name(s), comma separated (default: {DEFAULT_TASK})"
    )
    p.add_argument(
        "--task-options",
        default=None,
        metavar="JSON",
        help="the task's options as a JSON object or YAML mapping, e.g. "
        '\'{"dataset": "basic_arithmetic"}\' for reasoning_gym; with several tasks, '
        "one mapping per task name",
    )
    p.add_argument(
        "--suite",
        default=None,
        metavar="NAME",
        help="evaluate a suite of tasks instead (e.g. core): one row per task, the mean of each "
        "category (math, code, reasoning) and the overall mean",
    )
    p.add_argument(
        "--suite-file",
        default=None,
        metavar="YAML",
        help="the suites file that defines --suite (default: the one shipped with gspo)",
    )
    p.add_argument("--split", default=None, help=f"dataset split to evaluate (default: {DEFAULT_SPLIT})")
    p.add_argument(
        "--data-path", default=None, metavar="P", help="override the task's data source (file or folder; one task only)"
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N rows of each task (with --suite: caps every task's own limit)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="K",
        help="completions per prompt; K > 1 samples and reports pass@1 and pass@K (default: %(default)s)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sampling temperature; 0 means greedy. Default: greedy with --samples 1, else 1.0",
    )
    p.add_argument(
        "--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling threshold (default: %(default)s)"
    )
    p.add_argument(
        "--top-k", type=int, default=0, metavar="K", help="top-k sampling, 0 disables (default: %(default)s)"
    )
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="completion length limit (default: each task's own, or the suite's)",
    )
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=None,
        metavar="N",
        help="truncate longer prompts from the left (default: no limit)",
    )
    p.add_argument(
        "--batch-size", type=int, default=32, metavar="B", help="sequences generated together (default: %(default)s)"
    )
    p.add_argument(
        "--chat",
        choices=CHAT_CHOICES,
        default="auto",
        help="format prompts as chat messages: auto uses the chat template when the tokenizer "
        "has one (default: %(default)s)",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="PATH2",
        help="a second model evaluated on the same rows and settings, reported side by side",
    )
    p.add_argument(
        "--output",
        default="outputs/eval",
        metavar="DIR",
        help="folder for eval.json and eval.md (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16", "auto"),
        help="model weights dtype; auto keeps the checkpoint's (default: %(default)s)",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar per task")
    _environment_arguments(p)
    return p


def _environment_arguments(p) -> None:
    """``--environment``: one greedy episode per row instead of one completion (gspo.evaluation.episodes)."""
    g = p.add_argument_group("environments (multi-turn episodes; see docs/environments.md)")
    g.add_argument(
        "--environment", default=None, metavar="NAME", help="'python', 'guess', 'openenv' or 'package.module:Class'"
    )
    g.add_argument("--environment-options", default=None, metavar="JSON", help="the environment's keyword arguments")
    g.add_argument(
        "--max-turns", type=int, default=4, metavar="N", help="model turns per episode (default: %(default)s)"
    )
    g.add_argument(
        "--max-turn-tokens",
        type=int,
        default=None,
        metavar="N",
        help="tokens per model turn (default: --max-new-tokens)",
    )
    g.add_argument(
        "--environment-timeout-s", type=float, default=60.0, metavar="S", help="deadline of each environment call"
    )


def _load_model(name: str, *, dtype: str, device: str):
    """``(model, tokenizer)`` via :func:`gspo.models.loading.load_model_and_tokenizer`; errors become CLIError."""
    from gspo.models.loading import load_model_and_tokenizer

    try:
        return load_model_and_tokenizer(name, dtype=dtype, device=device)
    except (OSError, ValueError) as exc:  # ModelLoadError is an OSError
        raise CLIError(f"cannot load model {name!r}: {exc}") from exc


def _resolve_device(device: str) -> str:
    from gspo.models.device import resolve_device

    return str(resolve_device(device))


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


def _task_options(args, names: list[str]) -> dict[str, dict[str, Any]]:
    """--task-options per task name (one task: its options; several: a mapping by name)."""
    from gspo.config.run import parse_task_options

    if args.task_options is None:
        return {}
    options = parse_task_options(args.task_options)
    if len(names) == 1:
        return {names[0]: options}
    for key, value in options.items():
        if key not in names or not isinstance(value, dict):
            raise CLIError(
                f"--task-options with several tasks maps each task name ({names}) to its options; "
                f"got {key!r}: {value!r}"
            )
    return options


def _plan_tasks(args) -> list[EvalItem]:
    """The --task items, each task built with its options (errors name them; no model is loaded yet)."""
    from gspo.tasks import TASK_REGISTRY, get_task

    if args.suite_file is not None:
        raise CLIError("--suite-file needs --suite NAME")
    names = [n.strip() for n in (args.task or DEFAULT_TASK).split(",") if n.strip()]
    if not names:
        raise CLIError("--task names no task")
    if args.data_path is not None and len(names) > 1:
        raise CLIError("--data-path applies to one task; evaluate tasks one at a time")
    unknown = [n for n in names if n not in TASK_REGISTRY]
    if unknown:
        raise CLIError(f"unknown task {unknown[0]!r}; valid tasks: {sorted(TASK_REGISTRY)}")
    options = _task_options(args, names)
    items = []
    for name in names:
        try:
            task = get_task(name, **options.get(name, {}))
        except (ValueError, TypeError) as exc:
            raise CLIError(f"--task-options: {exc}") from exc
        items.append(EvalItem(name, task, args.split or DEFAULT_SPLIT, args.data_path, args.limit, args.max_new_tokens))
    return items


def _plan_suite(args):
    """``(suite, items)`` for --suite: the suite file read and checked, every task built with its options."""
    from gspo.evaluation.suite import SuiteError, build_tasks, get_suite

    given = [
        flag
        for flag, value in (
            ("--task", args.task),
            ("--task-options", args.task_options),
            ("--split", args.split),
            ("--data-path", args.data_path),
        )
        if value is not None
    ]
    if given:
        raise CLIError(
            f"{', '.join(given)} cannot be combined with --suite: the suite file names its tasks, "
            "options, splits and data"
        )
    try:
        suite = get_suite(args.suite, args.suite_file)
        tasks = build_tasks(suite)
    except SuiteError as exc:
        raise CLIError(str(exc)) from exc
    items = [
        EvalItem(
            e.name,
            task,
            e.split,
            e.data_path,
            e.capped_limit(args.limit),
            args.max_new_tokens or e.max_new_tokens,
            e.category,
        )
        for e, task in zip(suite.tasks, tasks)
    ]
    return suite, items


def _load_rows(items: list[EvalItem], *, chat: bool) -> list[tuple[EvalItem, list[dict]]]:
    out = []
    for item in items:
        try:
            rows = item.task.load(item.split, path=item.data_path, limit=item.limit, chat=chat)
        except (ValueError, OSError) as exc:  # DataError is a ValueError
            raise CLIError(f"task {item.label!r}: {exc}") from exc
        if not rows:
            raise CLIError(f"task {item.label!r}: split {item.split!r} has no rows")
        out.append((item, rows))
    return out


def _use_chat(args, tokenizer, name: str) -> bool:
    from gspo.config import use_chat_template
    from gspo.sampling import has_chat_template

    if args.chat == "yes" and not has_chat_template(tokenizer):
        raise CLIError(f"--chat yes but the tokenizer of {name!r} has no chat template")
    return use_chat_template(args.chat, has_chat_template(tokenizer))


def _evaluate_model(model, tokenizer, loaded, args, greedy: bool, temperature: float, label: str):
    from gspo.evaluation import evaluate_task

    results = []
    for item, rows in loaded:
        print(f"[eval] {label}: {item.label} ({len(rows)} rows x {args.samples} samples)", file=sys.stderr)
        try:
            result = evaluate_task(
                model,
                tokenizer,
                item.task,
                rows,
                samples=args.samples,
                greedy=greedy,
                temperature=temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                max_new_tokens=item.max_new_tokens,
                batch_size=args.batch_size,
                seed=args.seed,
                max_prompt_tokens=args.max_prompt_tokens,
                progress=args.progress,
            )
        except ValueError as exc:  # e.g. chat prompts with a tokenizer that has no template
            raise CLIError(f"task {item.label!r}: {exc}") from exc
        result.task = item.label
        results.append(result)
    return results


def _settings(args, items: list[EvalItem], suite, device: str, greedy: bool, temperature: float) -> dict[str, Any]:
    settings = dict(
        model=args.model,
        compare=args.compare,
        tasks=[i.label for i in items],
        split=args.split,
        data_path=args.data_path,
        task_options=args.task_options,
        limit=args.limit,
        samples=args.samples,
        greedy=greedy,
        temperature=temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        batch_size=args.batch_size,
        chat=args.chat,
        seed=args.seed,
        device=device,
        dtype=args.dtype,
    )
    if suite is not None:
        settings.update(
            suite=suite.name,
            suite_file=suite.source,
            suite_tasks=[
                dict(
                    name=e.name,
                    task=e.task,
                    category=e.category,
                    split=e.split,
                    limit=i.limit,
                    max_new_tokens=i.max_new_tokens,
                    data_path=e.data_path,
                    options=dict(e.options),
                )
                for e, i in zip(suite.tasks, items)
            ],
        )
    return settings


def run(args) -> int:
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--limit", args.limit),
        ("--max-new-tokens", args.max_new_tokens),
    ):
        if value is not None and value < 1:
            raise CLIError(f"{flag} must be >= 1, got {value}")
    if args.environment is not None:  # episodes: --max-new-tokens bounds each episode after its prompt
        from gspo.evaluation.episodes import run_environment_eval

        return run_environment_eval(args)
    greedy, temperature = _decoding(args)
    suite = None
    if args.suite is not None:  # everything below is checked before any model loads
        suite, items = _plan_suite(args)
    else:
        items = _plan_tasks(args)

    from gspo.evaluation import SuiteReport, report_markdown, write_report

    device = _resolve_device(args.device)
    t0 = time.perf_counter()
    model, tokenizer = _load_model(args.model, dtype=args.dtype, device=device)
    chat = _use_chat(args, tokenizer, args.model)
    loaded = _load_rows(items, chat=chat)
    results = _evaluate_model(model, tokenizer, loaded, args, greedy, temperature, args.model)

    compare = None
    if args.compare is not None:
        del model, tokenizer
        model_b, tokenizer_b = _load_model(args.compare, dtype=args.dtype, device=device)
        chat_b = _use_chat(args, tokenizer_b, args.compare)
        # the same rows; with --chat auto each model gets the prompt format its tokenizer supports
        loaded_b = loaded if chat_b == chat else _load_rows(items, chat=chat_b)
        compare = _evaluate_model(model_b, tokenizer_b, loaded_b, args, greedy, temperature, args.compare)

    report = None
    if suite is not None:
        report = SuiteReport.from_results(suite.name, suite.category_of, results, compare)
    json_path, md_path = write_report(
        args.output,
        results,
        model=args.model,
        settings=_settings(args, items, suite, device, greedy, temperature),
        compare=compare,
        compare_model=args.compare,
        suite=report,
    )
    print(report_markdown(results, model=args.model, compare=compare, compare_model=args.compare, suite=report), end="")
    print(f"[eval] wrote {json_path} and {md_path} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0
