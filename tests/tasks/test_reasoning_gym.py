"""The ``reasoning_gym`` task: disjoint train / held-out splits, the generator's verifier as the reward,
and bad options named before any model loads."""

from __future__ import annotations

import pytest

pytest.importorskip("reasoning_gym")

from gspo.config import ConfigError  # noqa: E402
from gspo.config.train import load_config  # noqa: E402
from gspo.tasks import get_task, make_task  # noqa: E402
from gspo.tasks.mixture import MixtureTask  # noqa: E402
from gspo.tasks.reasoning_gym import ReasoningGymTask  # noqa: E402

#: A small question space (two 1-digit terms, two operators: a few hundred questions), so that
#: seeds collide often and only de-duplication keeps the splits apart.
SMALL = dict(
    dataset="basic_arithmetic",
    min_terms=2,
    max_terms=2,
    min_digits=1,
    max_digits=1,
    operators=["+", "-"],
    allow_parentheses=False,
    allow_negation=False,
)


def _questions(rows):
    return [r["question"].strip() for r in rows]


@pytest.mark.parametrize("seeds", [{}, {"train_seed": 0, "test_seed": 1}])
def test_train_and_held_out_share_no_question(seeds):
    # with seeds 0 and 1, basic_arithmetic's item i+1 of train *is* item i of test (Random(seed + i))
    task = get_task("reasoning_gym", **SMALL, **seeds, train_size=100, test_size=60)
    test, train = task.load("test"), task.load("train")
    assert len(test) == 60 and len(train) == 100
    assert not set(_questions(train)) & set(_questions(test))
    assert len(set(_questions(train))) == len(train) and len(set(_questions(test))) == len(test)
    assert {r["id"].split("/")[1] for r in train} == {"train"}


def test_a_space_smaller_than_asked_keeps_what_it_has_and_stays_disjoint(caplog):
    tiny = dict(SMALL, operators=["+"])  # a few hundred distinct questions at most
    task = get_task("reasoning_gym", **tiny, test_size=60, train_size=2000)
    test, train = task.load("test"), task.load("train")
    assert len(test) == 60 and 0 < len(train) < 2000
    assert not set(_questions(train)) & set(_questions(test))
    assert "distinct train questions" in caplog.text


def test_limits_are_prefixes_and_loading_is_deterministic():
    task = get_task("reasoning_gym", **SMALL, test_size=50)
    first = task.load("test", limit=10)
    assert first == task.load("test")[:10]
    again = get_task("reasoning_gym", **SMALL, test_size=50).load("test", limit=10)
    assert [r["question"] for r in again] == [r["question"] for r in first]


def test_rows_prompt_instruction_and_chat():
    task = get_task("reasoning_gym", **SMALL, test_size=5, instruction="Give only the final number.")
    row = task.load("test", limit=1)[0]
    assert row["prompt"] == row["question"] + " Give only the final number."
    assert set(row) == {"prompt", "answer", "id", "question", "metadata"}
    assert row["id"].startswith("basic_arithmetic/test/")
    chat_row = task.load("test", limit=1, chat=True)[0]
    assert chat_row["prompt"] == [{"role": "user", "content": row["prompt"]}]
    assert (
        task.max_new_tokens == 64
        and get_task("reasoning_gym", dataset="chain_sum", max_new_tokens=16).max_new_tokens == 16
    )
    with pytest.raises(ValueError, match="procedural"):
        task.load("test", path="x.jsonl")
    with pytest.raises(ValueError, match="split"):
        task.load("validation")


def test_the_generators_own_verifier_is_the_reward():
    import reasoning_gym

    task = get_task("reasoning_gym", dataset="spell_backward", test_size=8)
    rows = task.load("test")
    verifier = reasoning_gym.get_score_answer_fn("spell_backward")
    completions = [rows[0]["answer"], rows[1]["answer"].upper(), "no idea", "", f"  {rows[4]['answer']}\n"]
    rows = rows[: len(completions)]
    # TRL's calling convention: one list per column
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"}
    rewards = task.reward([r["prompt"] for r in rows], completions, **columns)
    expected = [
        verifier(c.strip(), {"question": r["question"], "answer": r["answer"], "metadata": r["metadata"]})
        for c, r in zip(completions, rows)
    ]
    assert rewards == expected
    assert rewards[1] == 1.0  # spell_backward's verifier ignores case: not an exact-match reward
    assert rewards[2] == 0.0


def test_the_verifier_receives_the_entry_with_its_metadata(monkeypatch):
    task = get_task("reasoning_gym", **SMALL, test_size=3)
    row = task.load("test", limit=1)[0]
    calls = []

    def spy(answer, entry):
        calls.append((answer, entry))
        return 0.25

    monkeypatch.setattr(task.generators["test"], "score_answer", spy)
    assert task.score("  42 \n", row) == 0.25
    answer, entry = calls[0]
    assert answer == "42"
    assert entry == {"question": row["question"], "answer": row["answer"], "metadata": row["metadata"]}
    monkeypatch.setattr(task.generators["test"], "score_answer", lambda a, e: 1 / 0)
    assert task.score("42", row) == 0.0  # a verifier that raises scores 0, never crashes the run


def test_default_verifier_partial_credit_and_the_answer_tag_format():
    raw = get_task("reasoning_gym", **SMALL, test_size=3)
    row = raw.load("test", limit=1)[0]
    answer = row["answer"]
    assert raw.score(answer, row) == 1.0
    text = f"It is {answer}"
    assert raw.score(text, row) == pytest.approx(len(answer) / len(text))  # reasoning-gym's default rule
    tag = get_task("reasoning_gym", **SMALL, test_size=3, answer_format="tag")
    assert tag.score(f"thinking... <answer> {answer} </answer>", row) == 1.0
    assert tag.score(answer, row) == 0.0  # no tag: the verifier gets None


def test_final_answer_format_hands_the_verifier_the_last_number():
    final = get_task("reasoning_gym", dataset="basic_arithmetic", min_terms=2, max_terms=2, operators=["+"],
                     allow_parentheses=False, allow_negation=False, test_size=3, answer_format="final")  # fmt: skip
    row = final.load("test", limit=1)[0]
    question, answer = row["question"], row["answer"]
    assert final.score(f"{question.removeprefix('Calculate ').rstrip('.')} = {answer}", row) == 1.0
    assert final.score(f"The answer is {answer}.", row) == 1.0
    assert final.score(f"\\boxed{{{answer}}} and later 12345", row) == 1.0
    assert final.score(f"{answer} = {int(answer) + 1}", row) == 0.0  # the last number is what counts
    assert final.score("no number at all", row) == 0.0


@pytest.mark.parametrize(
    "options,named",
    [
        ({"dataset": "basic_arithmetc"}, "'basic_arithmetc'"),
        ({"dataset": "no_such_generator_xyz"}, "valid datasets"),
        ({}, "'dataset'"),
        ({"dataset": "basic_arithmetic", "max_term": 3}, "['max_term']"),
        ({"dataset": "basic_arithmetic", "seed": 3}, "['seed']"),
        ({"dataset": "basic_arithmetic", "size": 3}, "['size']"),
        ({"dataset": "basic_arithmetic", "min_terms": 3, "max_terms": 2}, "max_terms must be >= min_terms"),
        ({"dataset": "basic_arithmetic", "answer_format": "json"}, "'answer_format'"),
        ({"dataset": "basic_arithmetic", "train_seed": 5, "test_seed": 5}, "'train_seed' and 'test_seed'"),
        ({"dataset": "basic_arithmetic", "test_size": 0}, "'test_size'"),
    ],
)
def test_bad_options_give_an_error_naming_them(options, named):
    with pytest.raises(ValueError, match="reasoning_gym") as info:
        get_task("reasoning_gym", **options)
    assert named in str(info.value)


def test_unknown_option_suggests_the_close_one():
    with pytest.raises(ValueError, match=r"did you mean \['max_terms'"):
        ReasoningGymTask(dataset="basic_arithmetic", max_term=3)


def test_config_task_options_from_yaml_and_command_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: reasoning_gym\ntask_options:\n  dataset: chain_sum\n  max_terms: 3\n")
    assert load_config(str(path)).task_options == {"dataset": "chain_sum", "max_terms": 3}
    cli = load_config(overrides={"task": "reasoning_gym", "task_options": '{"dataset": "chain_sum", "min_terms": 2}'})
    assert cli.task_options == {"dataset": "chain_sum", "min_terms": 2}
    with pytest.raises(ConfigError, match=r"task_options: .*unknown option\(s\) \['bogus'\]"):
        load_config(str(path), {"task_options": '{"dataset": "chain_sum", "bogus": 1}'})
    with pytest.raises(ConfigError, match="task_options: .*'dataset'"):
        load_config(overrides={"task": "reasoning_gym"})
    with pytest.raises(ConfigError, match="task_options: must be a mapping"):
        load_config(overrides={"task": "reasoning_gym", "task_options": "[1, 2]"})
    with pytest.raises(ConfigError, match=r"task_options: task 'addition': unknown option\(s\) \['carry'\]"):
        load_config(overrides={"task_options": "{carry: only}"})


def test_bad_options_stop_gspo_train_before_any_model_loads(monkeypatch, capsys):
    import gspo.models.loading as loading
    from gspo.cli.main import main

    def no_model(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", no_model)
    code = main(
        ["train", "--task", "reasoning_gym", "--task-options", '{"dataset": "basic_arithmetic", "max_digitz": 2}']
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "task_options" in err and "'max_digitz'" in err and "Traceback" not in err


def test_mixture_options_per_component():
    task = make_task("addition:0.5,reasoning_gym:0.5", {"reasoning_gym": SMALL}, seed=1)
    assert isinstance(task, MixtureTask)
    rows = task.load("test", limit=8)
    assert {r["task"] for r in rows} == {"addition", "reasoning_gym"}
    with pytest.raises(ValueError, match="'dataset' is not one of"):
        make_task("addition:0.5,reasoning_gym:0.5", {"dataset": "chain_sum"})


def test_other_tasks_name_unknown_options():
    with pytest.raises(
        ValueError,
        match=r"task 'addition': unknown option\(s\) \['carry'\]; valid options: \['train_carry', 'test_carry'\]",
    ):
        get_task("addition", carry="only")
    with pytest.raises(ValueError, match=r"task 'gsm8k': unknown option\(s\) \['shots'\]"):
        get_task("gsm8k", shots=5)
