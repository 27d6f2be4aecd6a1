"""Math answers: extract the final answer of a completion and compare it with the gold one *by value*.

Extraction (:func:`extract_answer`), first form found wins:

1. the last ``\\boxed{...}`` (or ``\\fbox{...}``, nested braces matched; ``\\boxed 5`` too);
2. the last ``#### N`` line (GSM8K);
3. the last "the answer is X" / "Answer: X" / "Final answer: X" (up to the end of the sentence);
4. otherwise the last number in the text (``1,000``, ``-3.5``, ``7/8``).

Comparison (:func:`answers_match`), cheapest first:

1. equal after light normalisation (``$``, ``\\left``/``\\right``, ``\\dfrac``->``\\frac``, ``\\text{}``
   unwrapped, spacing commands and whitespace dropped, trailing ``.``);
2. if both sides read as plain numbers, compare numbers and stop: exactly (``"0.5" == "1/2" ==
   "\\frac{1}{2}"``, ``"1,000" == "1000"``, ``"18.00" == "18"``, ``"3.14159" != "3.1416"``,
   ``"1450000.5" != "1450000"``), except that a decimal standing for a fraction with no finite decimal
   expansion is equal within a relative tolerance of ``1e-6`` (``"0.333333" == "1/3"``,
   ``"0.33333" != "1/3"``). Reading a number drops ``$``, ``%``, degrees, a leading ``x =`` and
   trailing unit words after a space (``"18 dollars"``, ``"5 cm"``);
3. a gold answer written in a base (``52_8``) needs the same digits (and base, if pred names one);
4. otherwise symbolic equivalence through math-verify (``"x^2+2x+1" == "(x+1)^2"``, tuples, sets,
   intervals, ``\\sqrt``, ``\\pi`` ...), with ``verify(gold, pred)``.

How math-verify is kept from hanging. math-verify's own timeouts use ``signal.alarm``, which only works
on the main thread and cannot interrupt long C-level work, so it is always called here with
``parsing_timeout=None, timeout_seconds=None`` inside a persistent **worker process** (a plain
``python -c`` child, no ``fork`` of the caller, with a 4 GiB address-space limit). The caller sends one
JSON line per comparison and waits for the answer with ``select`` and a deadline (default 5 s,
:func:`configure_math_verify`); past the deadline the worker is killed, the comparison counts as *not
equal*, and the next comparison starts a fresh worker. So it works from any thread, never hangs, and
garbage never raises. Answers longer than 2,000 characters are not sent (not equal unless step 1 or 2
matched). If math-verify is not installed, step 4 always says *not equal*. A fresh worker takes
about a second to start (importing sympy); that start is not counted against the deadline.

Departures from the benchmarks' reference graders: Minerva/MATH graders compare normalised strings
only (no symbolic check) and GSM8K's compares the last number exactly; this module is more lenient
than both by design (value, not form, is rewarded).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from gspo.rewards.format import as_text, boxed_contents

#: Default deadline, in seconds, of one math-verify comparison (parse of both sides + verify).
DEFAULT_TIMEOUT_S = 5.0
#: Answers longer than this are never sent to math-verify.
MAX_SYMBOLIC_CHARS = 2000
#: Relative tolerance when a decimal approximates a fraction with no finite decimal expansion.
DECIMAL_REL_TOL = 1e-6

# ----------------------------------------------------------------------------------------------
# extraction

_BOXED_BARE_RE = re.compile(r"\\boxed[ \t]+(?!\{)([^\s$]+)")
_BOXED_OPEN_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASH_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"answer(?:\*\*)?\s*(?:is\s*:?|:|=)", re.IGNORECASE)
_NUMBER_TEXT_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_MATH_SPAN_RE = re.compile(r"\$+(.+?)\$+|\\\((.+?)\\\)|\\\[(.+?)\\\]")


def extract_boxed(text: str) -> str | None:
    """The content of the last closed ``\\boxed{...}`` in ``text`` (or ``\\boxed X``), else None."""
    if not isinstance(text, str):
        return None
    braced = boxed_contents(text)
    bare = list(_BOXED_BARE_RE.finditer(text))
    last_braced = max((m.start() for m in _BOXED_OPEN_RE.finditer(text)), default=-1) if braced else -1
    if bare and bare[-1].start() > last_braced:
        return bare[-1].group(1).strip() or None
    return braced[-1].strip() if braced and braced[-1].strip() else None


def _clip_sentence(text: str) -> str:
    """The answer part of the text after "the answer is": a math span if it opens one, else one sentence."""
    text = text.strip().lstrip("*").strip()
    span = _MATH_SPAN_RE.match(text)
    if span:
        return next(g for g in span.groups() if g is not None).strip()
    end = re.search(r"\.(?=\s|$)|[;!?](?=\s|$)", text)
    if end:
        text = text[: end.start()]
    return text.strip().strip("*").strip(" ,:")


def extract_answer(text: Any) -> str | None:
    """The final answer of a completion (see the module docstring for the order), or None."""
    try:
        text = as_text(text)
        if not text:
            return None
        boxed = extract_boxed(text)
        if boxed is not None:
            return boxed
        hashes = _HASH_RE.findall(text)
        for candidate in reversed(hashes):
            candidate = _clip_sentence(candidate.replace("####", ""))
            if candidate:
                return candidate
        for match in reversed(list(_ANSWER_IS_RE.finditer(text))):
            end_of_line = text.find("\n", match.end())
            candidate = _clip_sentence(text[match.end() : None if end_of_line < 0 else end_of_line])
            if candidate:
                return candidate
        numbers = _NUMBER_TEXT_RE.findall(text)
        return numbers[-1] if numbers else None
    except Exception:  # never raise on garbage
        return None


def gold_answer(gold: Any) -> str | None:
    """A gold answer as a string: numbers formatted, a full solution reduced to its boxed / ``####`` answer."""
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, (int, float, Fraction)):
        return str(gold)
    if not isinstance(gold, str):
        return None
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = extract_boxed(gold)
        if boxed is not None:
            return boxed
    if "####" in gold:
        return gold.rsplit("####", 1)[1].strip() or None
    return gold.strip() or None


# ----------------------------------------------------------------------------------------------
# normalisation and numbers

_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(r"\\[!,;: ]|\\quad|\\qquad")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[bB]ig[lr]?(?![A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_PERCENT_RE = re.compile(r"\\?%")
_NUM_RE = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|[+-]?\.\d+"
_NUMBER_RE = re.compile(rf"^(?:{_NUM_RE})$")
_SLASH_FRAC_RE = re.compile(rf"^([+-]?)({_NUM_RE})\s*/\s*({_NUM_RE})$")
_LATEX_FRAC_RE = re.compile(rf"^([+-]?)\\frac\s*(?:\{{\s*({_NUM_RE})\s*\}}|(\d))\s*(?:\{{\s*({_NUM_RE})\s*\}}|(\d))$")
_ASSIGN_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*")
_UNIT_RE = re.compile(
    rf"^({_NUM_RE}|[+-]?\\frac\s*\{{[^{{}}]*\}}\s*\{{[^{{}}]*\}}|{_NUM_RE}\s*/\s*{_NUM_RE})\s+([A-Za-z]{{2,}}[A-Za-z .'/-]*)$"
)


def normalize_answer(answer: str) -> str:
    """A light, value-preserving normal form of an answer string, used for the exact-match step."""
    s = answer.strip().replace("\u2212", "-").replace("\\$", "").replace("$", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    s = _SPACING_RE.sub("", s)
    s = _LEFT_RIGHT_RE.sub("", s)
    for _ in range(3):  # nested \text{...}
        s = _TEXT_WRAP_RE.sub(lambda m: m.group(1), s)
    s = re.sub(r"\s+", " ", s).strip()
    return s.rstrip(".").strip()


def _number_value(s: str) -> tuple[Fraction, bool] | None:
    """``(value, written_as_decimal)`` of a plain number, fraction or ``\\frac{a}{b}``, else None."""
    if _NUMBER_RE.match(s):
        text = s.replace(",", "")
        return Fraction(Decimal(text)), "." in text
    match = _SLASH_FRAC_RE.match(s)
    if match:
        sign, num, den = match.groups()
    else:
        match = _LATEX_FRAC_RE.match(s)
        if not match:
            return None
        sign, num, den = match.group(1), match.group(2) or match.group(3), match.group(4) or match.group(5)
    num, den = num.replace(",", ""), den.replace(",", "")
    if Decimal(den) == 0:
        return None
    value = Fraction(Decimal(num)) / Fraction(Decimal(den))
    return (-value if sign == "-" else value), "." in num + den


def to_number(answer: str) -> tuple[Fraction, bool] | None:
    """Read an answer as a number: ``(value, written_as_decimal)``, or None when it is not one.

    Accepts ``1,000``, ``-3.50``, ``$18``, ``50%`` (-> 50), ``90^\\circ``, ``7/8``, ``\\frac{3}{4}``,
    ``x = 5``, ``18 dollars``. Rejects anything with variables or operators (``2x``, ``1+2``, ``\\sqrt2``).
    """
    try:
        if len(answer) > 400:
            return None
        s = normalize_answer(answer)
        s = _DEGREE_RE.sub("", s)
        s = _PERCENT_RE.sub("", s).strip()
        s = _ASSIGN_RE.sub("", s, count=1)
        value = _number_value(s)
        if value is None:
            unit = _UNIT_RE.match(s)
            if unit:
                value = _number_value(unit.group(1).strip())
        return value
    except (ValueError, ArithmeticError, InvalidOperation):
        return None


_BASE_RE = re.compile(r"^([0-9A-Za-z]+)_\{?\s*(\d+)\s*\}?$")


def base_notation(answer: str) -> tuple[str, int] | None:
    """``("52", 8)`` for a number written in a base (``52_8``, ``52_{8}``, ``\\text{52}_8``), else None."""
    match = _BASE_RE.match(normalize_answer(answer).replace(" ", ""))
    return (match.group(1).upper(), int(match.group(2))) if match else None


def _terminates(value: Fraction) -> bool:
    """True when ``value`` has a finite decimal expansion (its denominator is 2^a * 5^b)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    """Exact, except a decimal against a fraction with no finite decimal expansion (``0.333333`` vs
    ``1/3``): equal within a relative ``DECIMAL_REL_TOL``."""
    (x, x_decimal), (y, y_decimal) = a, b
    if x == y:
        return True
    approximates = (x_decimal and not y_decimal and not _terminates(y)) or (
        y_decimal and not x_decimal and not _terminates(x)
    )
    if not approximates:
        return False
    try:
        return math.isclose(float(x), float(y), rel_tol=DECIMAL_REL_TOL, abs_tol=0.0)
    except OverflowError:
        return False


# ----------------------------------------------------------------------------------------------
# math-verify in a killable worker process

_WORKER_SOURCE = r"""
import json, logging, os, sys
try:
    import resource
    limit = int(os.environ.get("GSPO_MATH_VERIFY_MEM_BYTES", "0"))
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except Exception:
    pass
logging.disable(logging.CRITICAL)
sys.setrecursionlimit(10000)
out = sys.stdout
try:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
except Exception as exc:
    out.write(json.dumps({"ready": False, "error": repr(exc)}) + "\n"); out.flush(); sys.exit(0)
config = [LatexExtractionConfig(), ExprExtractionConfig()]
cache = {}
def wrap(s):
    depth = 0
    for ch in s:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            break
    return "\\boxed{" + s + "}" if depth == 0 else "$" + s + "$"
def parsed(s):
    if s not in cache:
        if len(cache) > 4096:
            cache.clear()
        cache[s] = parse(wrap(s), extraction_config=config, parsing_timeout=None)
    return cache[s]
out.write(json.dumps({"ready": True}) + "\n"); out.flush()
for line in sys.stdin:
    ok, rid = False, None
    try:
        req = json.loads(line)
        rid = req.get("id")
        gold, pred = parsed(req["gold"]), parsed(req["pred"])
        ok = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
    except Exception:
        ok = False
    out.write(json.dumps({"id": rid, "ok": ok}) + "\n"); out.flush()
"""


class MathVerifyWorker:
    """One ``python -c`` child running math-verify; :meth:`equal` answers one comparison with a deadline."""

    startup_timeout_s = 120.0

    def __init__(self, mem_bytes: int = 4 << 30) -> None:
        self.mem_bytes = mem_bytes
        self._proc: subprocess.Popen | None = None
        self._pid_of_owner = os.getpid()
        self._buffer = b""
        self._next_id = 0
        self.available = True  # False once math-verify turned out not to be importable

    def _start(self) -> None:
        env = dict(os.environ, GSPO_MATH_VERIFY_MEM_BYTES=str(self.mem_bytes), PYTHONIOENCODING="utf-8")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._buffer = b""
        self._pid_of_owner = os.getpid()
        ready = self._read_line(time.monotonic() + self.startup_timeout_s)
        if not ready or not ready.get("ready"):
            self.close()
            self.available = False

    def _read_line(self, deadline: float) -> dict | None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker died
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:
            return None

    def equal(self, gold: str, pred: str, timeout_s: float) -> bool:
        """math-verify's ``verify(parse(gold), parse(pred))``; False on error, timeout or a dead worker."""
        if self._proc is not None and self._pid_of_owner != os.getpid():
            self._proc = None  # inherited through fork: the parent owns that child
        if self._proc is None or self._proc.poll() is not None:
            if not self.available:
                return False
            self._start()
            if self._proc is None:
                return False
        self._next_id += 1
        request = json.dumps({"id": self._next_id, "gold": gold, "pred": pred}) + "\n"
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.write(request.encode("utf-8"))
            self._proc.stdin.flush()
        except (OSError, ValueError):
            self.close()
            return False
        reply = self._read_line(time.monotonic() + timeout_s)
        if reply is None or reply.get("id") != self._next_id:
            self.close()  # hung or died: kill it, the next call starts a fresh one
            return False
        return bool(reply.get("ok"))

    def close(self) -> None:
        """Kill the worker process (if this process started it); the next call starts a new one."""
        proc, self._proc = self._proc, None
        if proc is not None and self._pid_of_owner == os.getpid():
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    if stream is not None:
                        stream.close()


class _WorkerPool:
    def __init__(self) -> None:
        self.timeout_s = DEFAULT_TIMEOUT_S
        self.size = 1
        self._lock = threading.Lock()
        self._all: list[MathVerifyWorker] = []
        self._free: queue.Queue[MathVerifyWorker] = queue.Queue()

    def configure(self, *, timeout_s: float | None = None, workers: int | None = None) -> None:
        with self._lock:
            if timeout_s is not None:
                if not timeout_s > 0:
                    raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
                self.timeout_s = float(timeout_s)
            if workers is not None:
                if int(workers) < 1:
                    raise ValueError(f"workers must be >= 1, got {workers!r}")
                self.size = int(workers)

    def equal(self, gold: str, pred: str, timeout_s: float | None) -> bool:
        with self._lock:
            if self._free.empty() and len(self._all) < self.size:
                worker = MathVerifyWorker()
                self._all.append(worker)
                self._free.put(worker)
        worker = self._free.get()
        try:
            return worker.equal(gold, pred, self.timeout_s if timeout_s is None else timeout_s)
        finally:
            self._free.put(worker)

    def shutdown(self) -> None:
        with self._lock:
            for worker in self._all:
                worker.close()
            self._all.clear()
            self._free = queue.Queue()


_POOL = _WorkerPool()
atexit.register(_POOL.shutdown)


def configure_math_verify(*, timeout_s: float | None = None, workers: int | None = None) -> None:
    """Set the per-comparison deadline (seconds) and the number of math-verify worker processes."""
    _POOL.configure(timeout_s=timeout_s, workers=workers)


def shutdown_math_verify() -> None:
    """Kill the math-verify worker processes (they restart on demand)."""
    _POOL.shutdown()


def symbolic_equal(pred: str, gold: str, *, timeout_s: float | None = None) -> bool:
    """math-verify equivalence of two answer strings, in a worker process with a deadline. Never raises."""
    try:
        if len(pred) > MAX_SYMBOLIC_CHARS or len(gold) > MAX_SYMBOLIC_CHARS:
            return False
        return _POOL.equal(gold, pred, timeout_s)
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------
# public comparison and reward


def answers_match(pred: Any, gold: Any, *, timeout_s: float | None = None, symbolic: bool = True) -> bool:
    """True when the extracted answer ``pred`` equals ``gold`` by value (see the module docstring).

    ``symbolic=False`` skips math-verify (numbers and normalised strings only). Never raises.
    """
    try:
        if isinstance(pred, (int, float)) and not isinstance(pred, bool):
            pred = str(pred)
        gold = gold_answer(gold)
        if not isinstance(pred, str) or gold is None or not pred.strip():
            return False
        pred_norm, gold_norm = normalize_answer(pred), normalize_answer(gold)
        if pred_norm.replace(" ", "") == gold_norm.replace(" ", "") and pred_norm:
            return True
        gold_base = base_notation(gold)
        if gold_base is not None:  # "52_8": same digits (and the same base when pred names one)
            pred_base = base_notation(pred)
            if pred_base is not None:
                return pred_base == gold_base
            return pred_norm.replace(" ", "").upper() == gold_base[0]
        pred_num, gold_num = to_number(pred), to_number(gold)
        if pred_num is not None and gold_num is not None:
            return numbers_equal(pred_num, gold_num)
        if not symbolic:
            return False
        return symbolic_equal(pred.strip(), gold.strip(), timeout_s=timeout_s)
    except Exception:
        return False


def math_score(completion: Any, gold: Any, *, timeout_s: float | None = None) -> float:
    """1.0 when the final answer extracted from ``completion`` matches ``gold`` by value, else 0.0."""
    return 1.0 if answers_match(extract_answer(completion), gold, timeout_s=timeout_s) else 0.0


def math_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[Any], **_: Any) -> list[float]:
    """TRL reward: :func:`math_score` of each completion against the ``answer`` column.

    With several math-verify workers configured, completions are scored in parallel threads.
    """
    pairs = list(zip(completions, answer))
    if len(pairs) != len(completions):
        raise ValueError(f"math_reward: {len(completions)} completions but {len(answer)} answers")
    if _POOL.size > 1 and len(pairs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=_POOL.size) as pool:
            return list(pool.map(lambda p: math_score(*p), pairs))
    return [math_score(c, a) for c, a in pairs]


__all__ = [
    "DECIMAL_REL_TOL",
    "DEFAULT_TIMEOUT_S",
    "MAX_SYMBOLIC_CHARS",
    "MathVerifyWorker",
    "answers_match",
    "base_notation",
    "configure_math_verify",
    "extract_answer",
    "extract_boxed",
    "gold_answer",
    "math_reward",
    "math_score",
    "normalize_answer",
    "numbers_equal",
    "shutdown_math_verify",
    "symbolic_equal",
    "to_number",
]
