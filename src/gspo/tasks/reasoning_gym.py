"""``reasoning_gym``: any procedural generator of the ``reasoning-gym`` package as a task.

reasoning-gym ships about a hundred generators (``basic_arithmetic``, ``chain_sum``, ``word_sorting``,
``sudoku``...), each with a configuration dataclass and its own verifier ``score_answer``. This task
takes one generator by name with its options and, nanochat style, uses that verifier as the task's
score, hence as the RL reward::

    gspo train --task reasoning_gym --task-options '{"dataset": "basic_arithmetic", "max_terms": 3}'

or, in a YAML config::

    task: reasoning_gym
    task_options:
      dataset: basic_arithmetic
      min_terms: 2
      max_terms: 3
      instruction: Give only the final number.

Options (one flat mapping). The task's own keys are :data:`TASK_KEYS`:

- ``dataset`` (required): the generator's registered name;
- ``train_seed`` / ``test_seed`` (0 / 1,000,000,000): the generator seed of each split. Most
  generators draw item ``i`` from ``Random(seed + i)``, so the defaults are far apart;
- ``train_size`` / ``test_size`` (5,000 / 500): distinct questions per split;
- ``instruction`` (""): text added after every question (a space before it, or a newline when the
  question has several lines), e.g. ``"Give only the final number."``;
- ``answer_format`` (``"raw"``): what is handed to the verifier: ``"raw"`` the completion stripped of
  surrounding whitespace, ``"tag"`` the text of its last ``<answer>...</answer>`` (reasoning-gym's own
  convention; no tag gives the verifier ``None``, which scores 0), ``"final"`` the completion's final
  answer as gspo's math tasks read it (``gspo.rewards.math.extract_answer``: a ``\boxed{}``, a
  ``####`` line, "the answer is ...", else the last number). With ``"raw"`` a small model trained on
  arithmetic settles on echoing the question (``9 + 5 = 14`` scores 2/10 under the default verifier's
  partial credit, however right), so numeric datasets learn the arithmetic itself with ``"final"``;
- ``max_new_tokens`` (64): the completion budget of the task.

Every other key is a field of the generator's configuration (``min_terms``, ``max_digits``...); its
``seed`` and ``size`` are not options (the split seeds and sizes above set them). An unknown dataset,
an unknown key, or values the generator's own ``validate()`` rejects raise ``ValueError`` naming them,
when the task is built, before any data is generated or model loaded.

Splits. ``test`` is the first ``test_size`` distinct questions generated from ``test_seed``; ``train``
the first ``train_size`` distinct questions from ``train_seed`` that are *not* in the full test set
(compared as stripped question text), so the two never share a question, whatever the seeds. A small
question space (few terms, few digits) may hold fewer questions than asked for: generation stops
after :data:`ATTEMPTS_PER_ROW` times the size in tries and the split keeps what it has, with a warning.

Rows: ``{"prompt", "answer", "id": "<dataset>/<split>/<index>", "question", "metadata"}``; the
verifier receives ``{"question", "answer", "metadata"}``, the generator's entry. Scores are the
verifier's, in [0, 1], and may be fractional (the default verifier gives ``len(answer)/len(text)`` to
a text that contains the answer), so accuracy is the mean score.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
from typing import Any, ClassVar

from gspo.rewards.math import extract_answer
from gspo.tasks.base import DataError, RowContext, Task
from gspo.tasks.io import make_prompt

logger = logging.getLogger("gspo")

#: The task's own option keys and their defaults (every other key goes to the generator's config).
TASK_KEYS: dict[str, Any] = {
    "dataset": None,
    "train_seed": 0,
    "test_seed": 1_000_000_000,
    "train_size": 5000,
    "test_size": 500,
    "instruction": "",
    "answer_format": "raw",
    "max_new_tokens": 64,
}
ANSWER_FORMATS = ("raw", "tag", "final")
#: Generator config fields that the split settings own.
RESERVED_GENERATOR_KEYS = {"seed": "train_seed / test_seed", "size": "train_size / test_size"}
#: Generation gives up on a split after this many tries per row asked for (duplicates, held-out overlap).
ATTEMPTS_PER_ROW = 10


def _registry() -> dict[str, tuple[type, type]]:
    """reasoning-gym's ``{name: (dataset class, config class)}``; importing the package registers them."""
    try:
        import reasoning_gym  # noqa: F401
        from reasoning_gym.factory import DATASETS
    except ImportError as exc:  # pragma: no cover - a dependency of gspo
        raise ValueError(f"task 'reasoning_gym' needs the reasoning-gym package ({exc})") from None
    return DATASETS


def dataset_names() -> list[str]:
    """Every generator name reasoning-gym registers, sorted."""
    return sorted(_registry())


def generator_options(dataset: str) -> list[str]:
    """The configuration fields of generator ``dataset`` that may be given as options."""
    _, config_cls = _registry()[dataset]
    return [f.name for f in dataclasses.fields(config_cls) if f.name not in RESERVED_GENERATOR_KEYS]


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"task 'reasoning_gym': option {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


def extract_tagged(completion: str) -> str | None:
    """The stripped text of the last ``<answer>...</answer>`` in ``completion``, or None (reasoning-gym's own parser)."""
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion, tag_name="answer", strip=True)


def _check_dataset(dataset: Any) -> str:
    """``dataset`` if reasoning-gym registers it; else ValueError with the close names (or all of them)."""
    registry = _registry()
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(
            "task 'reasoning_gym': option 'dataset' must name a reasoning-gym generator, e.g. "
            '{"dataset": "basic_arithmetic"}' + (f", got {dataset!r}" if dataset is not None else "")
        )
    if dataset not in registry:
        close = difflib.get_close_matches(dataset, list(registry), n=5, cutoff=0.6)
        hint = f"; did you mean {close}?" if close else f"; valid datasets: {sorted(registry)}"
        raise ValueError(f"task 'reasoning_gym': unknown dataset {dataset!r}{hint}")
    return dataset


def _check_generator_keys(dataset: str, options: dict[str, Any]) -> None:
    """Every key left after the task's own is a field of the generator's config (not seed or size)."""
    reserved = sorted(k for k in options if k in RESERVED_GENERATOR_KEYS)
    if reserved:
        raise ValueError(
            f"task 'reasoning_gym': option(s) {reserved} are set per split; use "
            + ", ".join(RESERVED_GENERATOR_KEYS[k] for k in reserved)
        )
    allowed = generator_options(dataset)
    unknown = sorted(k for k in options if k not in allowed)
    if unknown:
        close = sorted({m for k in unknown for m in difflib.get_close_matches(k, allowed + list(TASK_KEYS), n=2)})
        raise ValueError(
            f"task 'reasoning_gym': unknown option(s) {unknown} for dataset {dataset!r}"
            + (f" (did you mean {close}?)" if close else "")
            + f"; its options: {allowed}; the task's own: {list(TASK_KEYS)}"
        )


def _check_settings(settings: dict[str, Any]) -> None:
    """The task's own options: seeds, sizes, answer format, instruction."""
    for key in ("train_seed", "test_seed"):
        _check_int(key, settings[key], 0)
    for key in ("train_size", "test_size", "max_new_tokens"):
        _check_int(key, settings[key], 1)
    if settings["train_seed"] == settings["test_seed"]:
        raise ValueError("task 'reasoning_gym': options 'train_seed' and 'test_seed' must differ")
    if settings["answer_format"] not in ANSWER_FORMATS:
        raise ValueError(
            f"task 'reasoning_gym': option 'answer_format' must be one of {list(ANSWER_FORMATS)}, "
            f"got {settings['answer_format']!r}"
        )
    if not isinstance(settings["instruction"], str):
        raise ValueError(
            f"task 'reasoning_gym': option 'instruction' must be a string, got {settings['instruction']!r}"
        )


def parse_options(options: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(dataset, task settings, generator config)`` from the flat options; ValueError naming a bad one."""
    options = dict(options)
    settings = {k: options.pop(k, default) for k, default in TASK_KEYS.items()}
    dataset = _check_dataset(settings["dataset"])
    _check_generator_keys(dataset, options)
    _check_settings(settings)
    return dataset, settings, options


class ReasoningGymTask(Task):
    """One reasoning-gym generator as a task; its verifier is the score (see the module docstring)."""

    name: ClassVar[str] = "reasoning_gym"
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    procedural: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        dataset, settings, generator_config = parse_options(options)
        self.dataset = dataset
        self.settings = settings
        self.generator_config = generator_config
        self.max_new_tokens = settings["max_new_tokens"]  # type: ignore[misc]
        self.generators = {
            "train": self._generator(settings["train_seed"], settings["train_size"]),
            "test": self._generator(settings["test_seed"], settings["test_size"]),
        }
        #: split -> (entries generated so far, whether generation ran out of distinct questions)
        self._cache: dict[str, tuple[list[dict[str, Any]], bool]] = {}

    def _generator(self, seed: int, size: int):
        """The generator instance for one split (its config validated by the generator itself)."""
        dataset_cls, config_cls = _registry()[self.dataset]
        try:
            config = config_cls(**self.generator_config, seed=seed, size=size * ATTEMPTS_PER_ROW)
            if hasattr(config, "validate"):
                config.validate()
            return dataset_cls(config=config)
        except (AssertionError, TypeError, ValueError, KeyError) as exc:
            raise ValueError(
                f"task 'reasoning_gym': dataset {self.dataset!r} rejects options {self.generator_config}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    # ------------------------------------------------------------------ data
    def _generate(self, split: str, count: int, exclude: set[str]) -> list[dict[str, Any]]:
        """The first ``count`` distinct questions of ``split`` not in ``exclude``, in index order."""
        generator = self.generators[split]
        size = self.settings[f"{split}_size"]
        seen = set(exclude)
        out: list[dict[str, Any]] = []
        index = 0
        while len(out) < count and index < size * ATTEMPTS_PER_ROW:
            try:
                entry = generator[index]
            except Exception as exc:  # a generator bug on one index: name it
                raise DataError(
                    f"task 'reasoning_gym': dataset {self.dataset!r} failed to generate {split} item {index}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            key = str(entry["question"]).strip()
            if key not in seen:
                seen.add(key)
                out.append(dict(entry, index=index))
            index += 1
        return out

    def entries(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The generator entries of ``split`` (each with its ``index``), after de-duplication."""
        self.check_split(split)
        size = self.settings[f"{split}_size"]
        want = size if limit is None else min(size, max(0, int(limit)))
        cached, exhausted = self._cache.get(split, ([], False))
        if len(cached) >= want or exhausted:
            return cached[:want]
        exclude: set[str] = set()
        if split == "train":
            exclude = {str(e["question"]).strip() for e in self.entries("test")}
        entries = self._generate(split, want, exclude)
        if len(entries) < want:
            logger.warning(
                "task reasoning_gym: dataset %r holds only %d distinct %s questions (asked for %d); "
                "widen its options for more",
                self.dataset,
                len(entries),
                split,
                want,
            )
        self._cache[split] = (entries, len(entries) < want)
        return entries

    def prompt_text(self, question: str) -> str:
        """The question with the task's instruction after it."""
        instruction = self.settings["instruction"].strip()
        if not instruction:
            return question
        question = question.rstrip()
        return f"{question}{chr(10) if chr(10) in question else ' '}{instruction}"

    def default_records(self, split: str, limit: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The generated entries of ``split`` (see the module docstring; ``path`` is refused)."""
        entries = self.entries(split, limit)
        if not entries:
            raise DataError(f"task 'reasoning_gym': dataset {self.dataset!r} generated no {split} questions")
        return [(f"{self.dataset}/{split}/{e['index']}", e) for e in entries]

    def make_row(self, record: dict[str, Any], at: RowContext) -> dict[str, Any]:
        return {
            "prompt": make_prompt(self.prompt_text(str(record["question"])), at.chat),
            "answer": None if record.get("answer") is None else str(record["answer"]),
            "id": at.where,
            "question": record["question"],
            "metadata": record.get("metadata", {}),
        }

    # ------------------------------------------------------------------ scoring
    def extract(self, completion: str) -> str | None:
        """What the verifier is given for ``completion`` (see ``answer_format``)."""
        if self.settings["answer_format"] == "tag":
            return extract_tagged(completion)
        if self.settings["answer_format"] == "final":
            return extract_answer(completion)
        return completion.strip()

    def score(self, completion: str, row: dict[str, Any]) -> float:
        """The generator's own ``score_answer`` on the extracted answer, clipped to [0, 1]; 0 on errors."""
        if not isinstance(completion, str):
            return 0.0
        entry = {"question": row.get("question"), "answer": row.get("answer"), "metadata": row.get("metadata") or {}}
        try:
            value = float(self.generators["test"].score_answer(self.extract(completion), entry))
        except Exception:  # a verifier that chokes on garbage scores it 0
            return 0.0
        return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


__all__ = [
    "ANSWER_FORMATS",
    "ReasoningGymTask",
    "TASK_KEYS",
    "dataset_names",
    "extract_tagged",
    "generator_options",
    "parse_options",
]
