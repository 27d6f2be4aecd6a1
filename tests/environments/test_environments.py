"""Environments: loading, return-type checks, the built-ins (Python tool, guessing game), the turn
format (chat templates with and without a tool role, plain text), the OpenEnv adapter."""

from __future__ import annotations

import pytest

from gspo.environments import Episode, Turn, load_environment
from gspo.environments.base import EnvironmentError, checked_turn
from gspo.environments.formatting import TurnFormat
from gspo.environments.guessing import GuessNumberEnv
from gspo.environments.openenv import OpenEnvAdapter
from gspo.environments.python_tool import PythonToolEnv, extract_code, without_code
from tests.environments.openenv_echo import CountdownEnvironment
from tests.environments.scripted import ScriptedEnv
from tests.helpers_tiny import tiny_tokenizer


# ------------------------------------------------------------------------------------------- loading
def test_load_by_name_and_dotted_path_with_options():
    assert isinstance(load_environment("python"), PythonToolEnv)
    guess = load_environment("guess", {"low": 3, "high": 7})
    assert (guess.low, guess.high) == (3, 7)
    env = load_environment("tests.environments.scripted:ScriptedEnv", {"turns": 2})
    assert isinstance(env, ScriptedEnv) and env.turns == 2


@pytest.mark.parametrize(
    "spec, options, message",
    [
        ("no_such_module:Env", None, "cannot import module 'no_such_module'"),
        ("tests.environments.scripted:Missing", None, "has no attribute 'Missing'"),
        ("guess", {"colour": "red"}, "environment_options"),
        ("tests.environments.scripted:rows", None, "has no \\['reset', 'step', 'reward'\\]"),
    ],
)
def test_bad_environments_are_named(spec, options, message):
    with pytest.raises(ValueError, match=message):
        load_environment(spec, options)


def test_wrong_turn_types_name_the_environment():
    assert checked_turn("e", ([{"role": "user", "content": "x"}], True, 1)) == Turn(
        [{"role": "user", "content": "x"}], True, 1.0
    )
    for bad, what in [
        ("text", "expected gspo.environments.Turn"),
        (Turn([{"role": "user"}]), "message 0 must be a dict"),
        (Turn(done="yes"), "done='yes'"),  # type: ignore[arg-type]
        (Turn(reward="a lot"), "expected a number"),  # type: ignore[arg-type]
        (Turn(reward=float("nan")), "non-finite"),
    ]:
        with pytest.raises(EnvironmentError, match=f"environment 'e': step.*{what}"):
            checked_turn("e", bad)


# ------------------------------------------------------------------------------------------- python
def test_code_blocks_are_found_and_removed():
    reply = "Let me compute.\n```python\nprint(2 + 3)\n```\nThen ```py\nx = 1\n```"
    assert extract_code(reply) == "x = 1"
    assert extract_code("no code here") is None
    assert without_code(reply).split() == ["Let", "me", "compute.", "Then"]
    assert without_code("42\n```python\nprint(4") == "42\n"


class _Task:
    def score(self, completion, row):
        return 1.0 if completion.strip() == row["answer"] else 0.0


def test_python_tool_runs_code_in_the_sandbox_and_returns_capped_output():
    env = PythonToolEnv(max_output_chars=40, timeout_s=2.0)
    env.task = _Task()
    episode = Episode(row={"prompt": [{"role": "user", "content": "37*41?"}], "answer": "1517"})
    first = env.reset(episode)
    assert first[0]["content"].startswith("37*41?\n\n") and "```python" in first[0]["content"]
    replies = [
        "```python\nprint(37 * 41)\n```",
        "```python\nprint(1 / 0)\n```",
        "```python\nprint('x' * 1000)\n```",
        "```python\nwhile True: pass\n```",
        "1517",
    ]
    turns = env.step_many([episode] * len(replies), replies)
    assert turns[0] == Turn([{"role": "tool", "content": "1517"}], tool_call=True)
    assert turns[1].tool_error and turns[1].messages[0]["content"] == "ZeroDivisionError: division by zero"
    assert turns[2].messages[0]["content"] == "x" * 40 + "..." and not turns[2].tool_error
    assert turns[3].tool_error and "timed out" in turns[3].messages[0]["content"]
    assert turns[4] == Turn(done=True)
    episode.replies = ["```python\nprint(1517)\n```", "1517"]
    assert env.reward(episode) == 1.0
    episode.replies = ["```python\nprint(1517)\n```"]  # cut by a limit on a code turn: no answer
    assert env.reward(episode) == 0.0


# ------------------------------------------------------------------------------------------- guess
def test_guessing_game_feedback_rewards_and_rows():
    env = GuessNumberEnv(low=1, high=20, turn_penalty=0.25, progress_reward=1.0, train_rows=5, test_rows=5)
    train, test = env.rows("train"), env.rows("test")
    assert env.rows("train") == train and [r["secret"] for r in train] != [r["secret"] for r in test]
    episode = Episode(row={"secret": 13, "prompt": ""})
    env.reset(episode)
    turns = []
    for reply in ["10", "I say 15", "no idea", "13"]:
        episode.replies.append(reply)
        turns.append(env.step(episode, reply))
    assert [t.messages[0]["content"] for t in turns] == [
        "Higher.",
        "Lower.",
        "Reply with one whole number.",
        "Correct!",
    ]
    assert [t.done for t in turns] == [False, False, False, True]
    assert [t.reward for t in turns] == [10 / 20, 6 / 10, None, 3 / 4]  # share of the range ruled out
    assert env.solved(episode) and env.reward(episode) == 1 - 0.25 * 3


# ------------------------------------------------------------------------------------------- format
IM_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_template_without_a_tool_role_gets_the_tagged_format_and_closes_the_turn_once():
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = IM_TEMPLATE
    fmt = TurnFormat(tok, chat=True)
    assert not fmt.tool_role
    tool = [{"role": "tool", "content": "5"}]
    after = "<|im_start|>user\n<output>\n5\n</output><|im_end|>\n<|im_start|>assistant\n"
    assert fmt.answer_text(tool, sampled_eos_text="<|im_end|>") == "\n" + after  # the model closed its turn
    assert fmt.answer_text(tool, sampled_eos_text=None) == "<|im_end|>\n" + after  # cut: the template closes it
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert fmt.answer_ids(tool, sampled_eos_id=im_end) == tok("\n" + after, add_special_tokens=False)["input_ids"]


def test_template_with_a_tool_role_keeps_it():
    tok = tiny_tokenizer(["<|im_start|>", "<|im_end|>"])
    tok.chat_template = IM_TEMPLATE.replace("{% for m", "{# tool messages welcome #}{% for m")
    fmt = TurnFormat(tok, chat=True)
    assert fmt.tool_role
    assert "<|im_start|>tool\n5<|im_end|>" in fmt.answer_text([{"role": "tool", "content": "5"}], sampled_eos_text=None)


def test_plain_text_format_without_a_chat_template():
    fmt = TurnFormat(tiny_tokenizer(chat=False), chat=True)
    assert not fmt.chat
    assert fmt.first_text([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == "a\n\nb"
    assert fmt.answer_text([{"role": "tool", "content": "5"}], sampled_eos_text=None) == "\n<output>\n5\n</output>\n"
    assert fmt.answer_text([{"role": "user", "content": "Higher."}], sampled_eos_text=None) == "\nHigher.\n"


# ------------------------------------------------------------------------------------------- openenv
def test_openenv_adapter_runs_an_environment_written_for_openenv():
    env = load_environment("openenv", {"env": "tests.environments.openenv_echo:CountdownEnvironment",
                                       "env_options": {"start_max": 3}, "train_rows": 4})  # fmt: skip
    assert isinstance(env, OpenEnvAdapter) and env.name == "openenv:CountdownEnvironment"
    rows = env.rows("train")
    assert [r["seed"] for r in rows] == [0, 1, 2, 3] and env.rows("test", 2)[0]["seed"] == 1_000_000
    episode = Episode(row=rows[2])  # seed 2: count down from 3
    assert env.reset(episode) == [{"role": "user", "content": "Count down from 3. Next?"}]
    got = []
    for reply in ["2", "1", "0"]:
        episode.replies.append(reply)
        turn = env.step(episode, reply)
        episode.turn_rewards.append(turn.reward or 0.0)
        got.append((turn.messages[0]["content"], turn.done, turn.reward))
    assert got == [("Right. Next?", False, 1.0), ("Right. Next?", False, 1.0), ("Right. Next?", True, 1.0)]
    closed = CountdownEnvironment.closed
    assert env.reward(episode) == 0.0 and CountdownEnvironment.closed == closed
    env.close(episode)  # the instance is released at the end (also after a failure), not by reward
    assert CountdownEnvironment.closed == closed + 1
    assert env.solved(episode) and episode.total_reward == 3.0
    wrong = Episode(row=rows[1])  # count down from 2
    env.reset(wrong)
    assert env.step(wrong, "7") == Turn([{"role": "user", "content": "Wrong."}], done=True, reward=0.0)
