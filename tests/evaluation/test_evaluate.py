"""Tests of gspo.evaluation.evaluate: the pass@k estimator and evaluate_task on a tiny model."""

from __future__ import annotations

from math import comb

import pytest

from gspo.evaluation import EvalResult, evaluate_task, pass_at_k
from gspo.sampling import decode_completions, encode_prompts, sample, special_token_ids
from tests.helpers_tiny import ParityTask


def test_pass_at_k_hand_computed():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 4, 2) == 1.0  # n - c < k
    assert pass_at_k(5, 5, 1) == 1.0


def test_pass_at_k_matches_binomial_formula_and_is_stable():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1.0 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < pass_at_k(2000, 3, 100) < 1.0  # no overflow with large n


@pytest.mark.parametrize("args", [(0, 0, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)])
def test_pass_at_k_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        pass_at_k(*args)


def test_greedy_evaluation_uses_the_sampler_and_the_task_scorer(eval_model_and_tok):
    model, tok = eval_model_and_tok
    task = ParityTask(rows=7)
    rows = task.load("test")
    result = evaluate_task(model, tok, task, rows, batch_size=3)
    assert isinstance(result, EvalResult)
    assert result.task == "parity" and result.n == 7 and result.samples == 1
    assert result.pass_at_k == {} and result.settings["greedy"] is True
    assert result.settings["max_new_tokens"] == ParityTask.max_new_tokens
    assert result.ids == [r["id"] for r in rows]
    assert [len(s) for s in result.scores] == [1] * 7
    assert result.accuracy == pytest.approx(sum(s[0] for s in result.scores) / 7)
    # one score_batch call, aligned with the rows
    ((completions, scored_rows),) = task.calls
    assert scored_rows == rows and completions == [c[0] for c in result.completions]
    # identical to calling the sampler directly (greedy: batching does not matter)
    ids_BP, mask_BP = encode_prompts(tok, [r["prompt"] for r in rows])
    eos, pad = special_token_ids(tok, model)
    direct = sample(model, ids_BP, mask_BP, max_new_tokens=6, eos_token_ids=eos, pad_token_id=pad, greedy=True)
    assert completions == decode_completions(tok, direct)
    assert result.completion_tokens == direct.num_completion_tokens
    assert result.prompt_tokens == int(mask_BP.sum())
    assert result.seconds >= result.generation_seconds > 0 and result.tokens_per_second > 0
    assert 0.0 <= result.finished_fraction <= 1.0


def test_sampled_evaluation_reports_pass_at_k_and_is_seeded(eval_model_and_tok):
    model, tok = eval_model_and_tok
    task = ParityTask(rows=6)
    rows = task.load("test", chat=True)
    kw = dict(samples=4, temperature=1.0, batch_size=10, seed=11)
    a = evaluate_task(model, tok, task, rows, **kw)
    b = evaluate_task(model, tok, task, rows, **kw)
    c = evaluate_task(model, tok, task, rows, **{**kw, "seed": 12})
    assert a.completions == b.completions and a.scores == b.scores
    assert a.completions != c.completions
    assert set(a.pass_at_k) == {1, 4} and a.settings["greedy"] is False
    assert [len(s) for s in a.scores] == [4] * 6
    expected = {k: sum(pass_at_k(4, int(sum(s)), k) for s in a.scores) / 6 for k in (1, 4)}
    assert a.pass_at_k == pytest.approx(expected)
    assert a.pass_at_k[1] == pytest.approx(sum(map(sum, a.scores)) / 24)  # pass@1 = mean correctness
    assert a.accuracy == pytest.approx(sum(s[0] for s in a.scores) / 6)


def test_evaluate_task_argument_errors(eval_model_and_tok):
    model, tok = eval_model_and_tok
    task = ParityTask(rows=2)
    rows = task.load("test")
    with pytest.raises(ValueError, match="identical"):
        evaluate_task(model, tok, task, rows, samples=2, greedy=True)
    with pytest.raises(ValueError, match="no rows"):
        evaluate_task(model, tok, task, [])


def test_eval_result_dict_round_trip(eval_model_and_tok):
    model, tok = eval_model_and_tok
    task = ParityTask(rows=3)
    result = evaluate_task(model, tok, task, task.load("test"), samples=2, temperature=0.9)
    again = EvalResult.from_dict(result.to_dict())
    assert again == result
    assert "rows" not in result.to_dict(include_rows=False)


def test_evaluate_the_real_addition_task(eval_model_and_tok):
    arithmetic = pytest.importorskip("gspo.tasks.arithmetic")
    model, tok = eval_model_and_tok
    task = arithmetic.AdditionTask()
    rows = task.load("test", limit=4)
    result = evaluate_task(model, tok, task, rows, batch_size=4)
    assert result.task == "addition" and result.n == 4
    assert all(len(c[0]) <= task.max_new_tokens for c in result.completions)
    assert all(s[0] in (0.0, 1.0) for s in result.scores)
