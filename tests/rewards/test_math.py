"""Math answer extraction and by-value comparison (gspo.rewards.math)."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gspo.rewards.math import (
    answers_match,
    configure_math_verify,
    extract_answer,
    extract_boxed,
    gold_answer,
    math_reward,
    math_score,
    symbolic_equal,
    to_number,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so the total is \\boxed{42}.", "42"),
        ("\\boxed{\\frac{1}{2}} and later \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
        ("nested \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{7} then truncated \\boxed{\\frac{1}{", "7"),
        ("\\boxed 5", "5"),
        ("\\fbox{12}", "12"),
        ("She makes 9 * 2 = $18.\n#### 18", "18"),
        ("#### $1,000", "$1,000"),
        ("So the answer is 18.", "18"),
        ("The answer is: 3.5.", "3.5"),
        ("Final Answer: The final answer is $[2,5)$. I hope it is correct.", "[2,5)"),
        ("**Answer:** 42", "42"),
        ("first 3 apples then 7/8 of them", "7/8"),
        ("there were 1,234 people and -5 left", "-5"),
        ("To answer this we add 3 and 4 to get 7", "7"),
        ([{"role": "assistant", "content": "#### 9"}], "9"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "no numbers here", None, 17, ["not", "messages"], "\\boxed{"])
def test_extract_answer_nothing(text):
    assert extract_answer(text) is None


def test_boxed_priority_over_hash_and_number():
    assert extract_answer("#### 5\nActually \\boxed{6} and 7") == "6"
    assert extract_boxed("x \\boxed{a} y \\boxed{b}") == "b"


def test_gold_answer_forms():
    assert gold_answer("step\n#### 1,200") == "1,200"
    assert gold_answer("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert gold_answer(18) == "18"
    assert gold_answer(None) is None and gold_answer(True) is None


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("0.5", "\\frac{1}{2}"),
        ("1/2", "\\frac{1}{2}"),
        ("\\frac12", "0.5"),
        ("1,000", "1000"),
        ("1{,}000", "1000"),
        ("\\dfrac{3}{4}", "0.75"),
        ("-\\frac{3}{4}", "-0.75"),
        ("$18.00", "18"),
        ("18 dollars", "18"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        ("x = 5", "5"),
        ("1/3", "0.333333"),  # within the documented relative tolerance 1e-6
        ("\\text{Evelyn}", "Evelyn"),
        ("52_{8}", "52_8"),
        ("x^2+2x+1", "(x+1)^2"),  # symbolic, through math-verify
        ("(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("[2,5)", "[2, 5)"),
    ],
)
def test_equivalent(pred, gold):
    # a generous deadline: this checks equivalence, not speed (the timeout has its own tests), and a
    # loaded CI machine can take seconds for a first symbolic comparison
    assert answers_match(pred, gold, timeout_s=60.0)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("3.14159", "3.1416"),  # decimals are compared with a 1e-6 relative tolerance only
        ("0.33333", "1/3"),
        ("1450000.5", "1450000"),  # integers are exact, however large
        ("18.0000001", "18"),
        ("19", "18"),
        ("18.5", "18"),
        ("-18", "18"),
        ("1,001", "1000"),
        ("2x", "2"),
        ("52_9", "52_8"),
        ("x^2+2x", "(x+1)^2"),
        ("\\frac{2}{3}", "\\frac{1}{2}"),
        ("", "5"),
        ("5", ""),
        (None, "5"),
    ],
)
def test_not_equivalent(pred, gold):
    assert not answers_match(pred, gold)


def test_to_number():
    assert to_number("1,000") == (1000, False)
    assert to_number("18.00") == (18, True)
    assert to_number("\\frac{3}{4}")[0] == 0.75
    assert to_number("2x") is None and to_number("1+2") is None and to_number("1/0") is None


def test_math_reward_batch_and_columns():
    completions = ["so \\boxed{18}", "#### 17", [{"role": "assistant", "content": "The answer is 18."}], None]
    assert math_reward(["p"] * 4, completions, answer=["18"] * 4, extra_column=[1] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert math_score("\\boxed{0.5}", "\\frac{1}{2}") == 1.0


def test_pathological_latex_is_bounded_in_time():
    start = time.monotonic()
    assert not answers_match("9^{9^{9^{9^{9^{9}}}}}", "1", timeout_s=1.0)
    assert time.monotonic() - start < 15
    # the killed worker is replaced; symbolic checks keep working afterwards
    assert answers_match("x^2+2x+1", "(x+1)^2")


def test_huge_and_garbage_inputs_never_raise_or_hang():
    start = time.monotonic()
    huge = "1" * 2_000_000
    assert extract_answer(huge) is not None
    assert not answers_match(huge, "1")
    assert not answers_match("\\frac{" * 5000, "1")
    assert not answers_match("}{)(\\\\\\left" * 100, "\\frac{1}{2}")
    assert math_score("\\boxed{" * 10_000 + "}" * 3, "1") == 0.0
    assert math_score("\x00\ud800 \\boxed{\x00}", "0") == 0.0
    assert time.monotonic() - start < 60


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60), st.text(max_size=20))
def test_garbage_never_raises(completion, gold):
    value = math_score(completion, gold)
    assert value in (0.0, 1.0)


def test_works_from_threads():
    results = []

    def check():
        results.append(answers_match("x^2+2x+1", "(x+1)^2") and answers_match("0.5", "\\frac{1}{2}"))

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == [True] * 4


def test_configure_validates():
    with pytest.raises(ValueError):
        configure_math_verify(timeout_s=0)
    with pytest.raises(ValueError):
        configure_math_verify(workers=0)


def test_symbolic_equal_skips_overlong():
    assert not symbolic_equal("x" * 5000, "x" * 5000)


def _fake_worker(monkeypatch, source: str):
    from gspo.rewards import math as math_module

    monkeypatch.setattr(math_module, "_WORKER_SOURCE", source)
    return math_module.MathVerifyWorker()


READY = "import sys\nsys.stdout.write('{\"ready\": true}\\n'); sys.stdout.flush()\n"


def test_worker_without_math_verify(monkeypatch):
    worker = _fake_worker(monkeypatch, 'print(\'{"ready": false, "error": "no math_verify"}\', flush=True)')
    assert worker.equal("1", "1", timeout_s=5) is False
    assert worker.available is False
    assert worker.equal("1", "1", timeout_s=5) is False  # no restart attempts once unavailable


def test_worker_that_dies_or_hangs_is_replaced(monkeypatch):
    worker = _fake_worker(monkeypatch, READY + "sys.stdin.readline()\nsys.exit(1)\n")
    assert worker.equal("1", "1", timeout_s=5) is False  # died mid-request
    assert worker.equal("1", "1", timeout_s=5) is False  # a fresh one started, and died too
    assert worker.available
    worker = _fake_worker(monkeypatch, READY + "import time\nsys.stdin.readline()\ntime.sleep(600)\n")
    start = time.monotonic()
    assert worker.equal("1", "1", timeout_s=0.5) is False
    assert time.monotonic() - start < 10
    assert worker._proc is None  # killed
    worker.close()
