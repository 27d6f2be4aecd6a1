"""Code extraction and the sandboxed code reward (gspo.rewards.code)."""

from __future__ import annotations

from gspo.rewards.code import assemble_solution, build_test_program, code_reward, extract_code

PREFIX = 'def add(a, b):\n    """Add two numbers."""\n'


def test_extract_code_prefers_block_defining_entry_point():
    text = "Here:\n```python\ndef helper():\n    pass\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\n```python\nprint(add(1, 2))\n```"
    assert extract_code(text, "add").startswith("def add(a, b):")
    assert extract_code(text).startswith("def add")  # last block that defines something
    assert extract_code("```python\ndef add(a, b):\n    return a + b").startswith("def add")  # unclosed
    assert extract_code("    return a + b\n") == "    return a + b\n"  # no fence: raw text
    assert extract_code("```bash\nls\n```") == "```bash\nls\n```"  # not python: raw text
    assert extract_code(None) == ""


def test_assemble_solution_forms():
    body = "    return a + b\n"
    assert assemble_solution(body, PREFIX, "add") == PREFIX + body
    restated = "```python\ndef add(a, b):\n    return a + b\n```"
    program = assemble_solution(restated, PREFIX, "add")
    assert program.startswith(PREFIX.rstrip("\n")) and program.rstrip().endswith("return a + b")
    assert assemble_solution("x = 1", None, None) == "x = 1"


def test_build_test_program():
    assert build_test_program(["assert f(1) == 2", "assert f(2) == 3"]) == "assert f(1) == 2\nassert f(2) == 3\n"
    assert build_test_program("assert True", "import math") == "import math\nassert True\n"


def test_code_reward_in_sandbox():
    tests = ["assert add(1, 2) == 3\nassert add(-1, 1) == 0"] * 5
    completions = [
        "    return a + b\n",  # body continuation
        "```python\ndef add(a, b):\n    return a + b\n```",  # restated function
        "    return a - b\n",  # wrong
        "    return a +\n",  # syntax error
        None,  # garbage
    ]
    values = code_reward(["p"] * 5, completions, tests, code_prefix=[PREFIX] * 5, entry_point=["add"] * 5)
    assert values == [1.0, 1.0, 0.0, 0.0, 0.0]
    # without a prefix (MBPP style), with setup code and assert lists
    values = code_reward(
        ["p"] * 2,
        ["def sq(x):\n    return x * x", "def sq(x):\n    return x"],
        [["assert sq(3) == K"], ["assert sq(3) == K"]],
        test_setup_code=["K = 9", "K = 9"],
    )
    assert values == [1.0, 0.0]
