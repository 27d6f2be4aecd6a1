"""Bad input, property-based: configs and dataset files either work or fail with a clear, named error.

* Config: any mapping field -> value through ``from_dict(GSPOConfig, d).validate()`` returns a config
  or raises ``ConfigError`` whose message starts with the (real) field's name -- never another
  exception type. An accepted config round-trips through ``--print-config`` YAML.
* Data: any JSONL file content through ``JSONLTask.load`` / ``read_jsonl`` returns rows or raises a
  ``DataError`` naming the file and the *first* bad line -- never a traceback from deeper down.
  Rows that load are turned into tensors and sampled from without error.

Known gaps in ``src/`` are pinned by ``xfail(strict=True)`` tests at the end of each section (see the
reasons); the main properties exclude exactly those inputs so they keep guarding everything else.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gspo.config import ConfigError, GSPOConfig, from_dict, load_config, to_yaml
from gspo.tasks.base import DataError
from gspo.tasks.io import read_jsonl
from gspo.tasks.jsonl import JSONLTask

pytestmark = pytest.mark.timeout(180)

FIELDS = [f.name for f in dataclasses.fields(GSPOConfig)]
SETTINGS = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ============================================================================================ config
_specials = st.sampled_from(
    [
        "none",
        "null",
        "None",
        "",
        " ",
        "true",
        "false",
        "yes",
        "off",
        "1",
        "0",
        "-1",
        "2",
        "1e3",
        "1.5",
        "-0.0",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "gspo",
        "grpo",
        "gspo-token",
        "cpu",
        "cuda",
        "cuda:1",
        "auto",
        "raise",
        "zero",
        "a,b",
        "task",
        "token-mean",
        "cosine",
        "recompute",
        "float32",
        "bfloat16",
        "yes",
        "no",
        "all-linear",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    _specials,
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.text(max_size=3), _scalars, max_size=2),
    st.tuples(_scalars, _scalars),
)
_keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from([f.replace("_", "-") for f in FIELDS if "_" in f]))


def _check_config_outcome(d: dict):
    try:
        cfg = from_dict(GSPOConfig, d).validate()
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{exc.field}: "), message
        return exc
    # accepted: every number is finite and the derived sizes make sense
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float):
            assert math.isfinite(value), (f.name, value)
    assert cfg.rollout_size % cfg.num_minibatches == 0 and cfg.minibatch_size >= 1
    return cfg


@SETTINGS
@given(d=st.dictionaries(_keys, _values, max_size=6))
def test_random_config_values_give_a_config_or_a_config_error_naming_the_field(d):
    outcome = _check_config_outcome(d)
    if isinstance(outcome, ConfigError):
        assert outcome.field in FIELDS, outcome  # every key is a real field here


# mostly-valid configs: start from values that are valid, change one or two fields
_valid_base = dict(prompts_per_step=4, group_size=4, num_minibatches=2, max_steps=3, learning_rate=1e-3)


@SETTINGS
@given(d=st.dictionaries(_keys, _values, max_size=2))
def test_one_or_two_bad_fields_in_a_good_config_are_named(d):
    values = {**_valid_base, **d}
    outcome = _check_config_outcome(values)
    if isinstance(outcome, ConfigError):
        assert outcome.field in FIELDS
        touched = {k.replace("-", "_") for k in d}
        # the error names a field that was changed, or one whose constraint involves a changed field
        related = {
            "num_minibatches": {"prompts_per_step", "group_size"},
            "reward_weights": {"rewards"},
            "load_in_4bit": {"lora_r"},
        }
        assert outcome.field in touched or related.get(outcome.field, set()) & touched, (outcome, d)


@settings(SETTINGS, suppress_health_check=list(SETTINGS.suppress_health_check) + [HealthCheck.filter_too_much])
@given(d=st.dictionaries(_keys, _values, max_size=3))
def test_an_accepted_config_round_trips_through_print_config_yaml(tmp_path_factory, d):
    try:
        cfg = from_dict(GSPOConfig, {**_valid_base, **d}).validate()
    except ConfigError:
        assume(False)
    # An Optional[str] field set to the *string* "none"/"null"/"" means None on the command line; skip those.
    assume(not (cfg.data_path is not None and cfg.data_path.strip().lower() in ("none", "null", "")))
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(to_yaml(cfg))
    assert load_config(str(path)) == cfg


def test_unknown_field_is_named_and_the_valid_ones_listed():
    with pytest.raises(ConfigError, match=r"^group_sise: unknown field in config; did you mean \['group_size'[],]"):
        from_dict(GSPOConfig, {"group_sise": 4})


@pytest.mark.parametrize("field", ["max_steps", "learning_rate", "clip_low", "adam_eps"])
def test_huge_numbers_are_a_config_error_or_kept(field):
    try:
        cfg = from_dict(GSPOConfig, {field: 10**400}).validate()
    except ConfigError as exc:
        assert exc.field == field
    else:
        assert getattr(cfg, field) == 10**400


@pytest.mark.parametrize("value", [2**60 + 1, str(2**60 + 1)])
def test_large_integers_are_kept_exactly(value):
    assert from_dict(GSPOConfig, {"seed": value}).validate().seed == 2**60 + 1


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), "nan", "-inf"])
def test_non_finite_reward_weights_are_a_config_error(weight):
    with pytest.raises(ConfigError, match=r"^reward_weights: "):
        from_dict(GSPOConfig, {"rewards": ["task"], "reward_weights": [weight]}).validate()


@SETTINGS
@given(
    d=st.dictionaries(
        st.one_of(st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False)), _scalars, min_size=1, max_size=2
    )
)
def test_non_string_keys_are_a_config_error(d):
    with pytest.raises(ConfigError):
        from_dict(GSPOConfig, d)


def test_binary_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01max_steps: 3\n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(str(path))


@pytest.mark.parametrize(
    "content, message",
    [
        ("max_steps: [1, 2\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping of field: value, got list"),
        ("group_size: 1\n", "group_size: must be >= 2"),
        ("algorithm: trpo\n", "algorithm: must be one of"),
        ("learning_rate: .nan\n", "learning_rate: must be a finite number"),
        ("max_steps: 1.5\n", "max_steps: must be an integer, got 1.5"),
        ("resume: maybe\n", "resume: must be true or false"),
        ("rewards: {a: 1}\n", "rewards: must be a list"),
    ],
)
def test_bad_yaml_config_files_are_config_errors(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert message in str(err.value)


# ============================================================================================ data
# Each generated line is (text, verdict): "ok" (a row), "blank" (skipped), "syntax" (not a JSON object) or
# "content" (a JSON object that is not a valid row). ``read_jsonl`` parses the whole file before the task
# checks the rows, so the error names the first *syntax* error if there is one, else the first bad row.
HUGE = {  # huge lines, expanded in the test (a compact repr keeps hypothesis' reports readable)
    "<huge-valid>": json.dumps({"prompt": "y" * 100_000}),
    "<huge-unterminated>": '{"prompt": "' + "x" * 100_000,
}
_prompt_text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())
_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False), st.text(max_size=8)
)


def _dumps(obj, ascii_only: bool) -> str:
    return json.dumps(obj, ensure_ascii=ascii_only)


_good_line = st.builds(
    lambda prompt, extra, ascii_only: (_dumps({"prompt": prompt, **extra}, ascii_only), "ok"),
    _prompt_text,
    st.dictionaries(st.sampled_from(["answer", "id", "meta", "choices"]), _json_scalar, max_size=2),
    st.booleans(),
)
_bad_line = st.one_of(
    st.builds(lambda p: (_dumps({"prompt": p}, True)[:-1], "syntax"), _prompt_text),  # truncated object
    st.builds(lambda s: ("{" + s, "syntax"), st.text(alphabet='abc:,[]" ', max_size=10)),  # garbage
    st.builds(
        lambda v: (json.dumps(v), "syntax"), st.one_of(_json_scalar, st.lists(_json_scalar, max_size=2))
    ),  # not an object
    st.just(("<huge-unterminated>", "syntax")),
    st.just(("\ufeff" + json.dumps({"prompt": "with a byte order mark"}), "syntax")),
    st.builds(lambda v: (json.dumps({"question": v}), "content"), _json_scalar),  # no prompt
    st.builds(
        lambda v: (json.dumps({"prompt": v}), "content"),  # prompt of a wrong type
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.lists(_json_scalar, max_size=2),
            st.dictionaries(st.text(max_size=3), _json_scalar, max_size=2),
        ),
    ),
    st.builds(
        lambda ws: (json.dumps({"prompt": ws}), "content"), st.sampled_from(["", " ", "\t\n", "\u3000 "])
    ),  # blank prompt
    st.just((json.dumps({"prompt": [{"role": "user", "content": "hi"}]}), "content")),  # chat list, chat=False
)
_blank_line = st.sampled_from([("", "blank"), (" ", "blank"), ("\t", "blank")])
_lines = st.lists(
    st.one_of(_good_line, _good_line, _bad_line, _blank_line, st.just(("<huge-valid>", "ok"))), max_size=8
)


def _expected_bad_line(lines):
    for verdicts in (("syntax",), ("content",)):
        for number, (_, verdict) in enumerate(lines, start=1):
            if verdict in verdicts:
                return number
    return None


@SETTINGS
@given(lines=_lines, gz=st.booleans())
def test_any_jsonl_file_loads_or_names_a_bad_line(tmp_path_factory, lines, gz):
    path = tmp_path_factory.mktemp("data") / ("train.jsonl.gz" if gz else "train.jsonl")
    texts = [HUGE.get(t, t) for t, _ in lines]
    text = "\n".join(texts) + ("\n" if lines else "")
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    bad = _expected_bad_line(lines)
    good = [json.loads(t) for t, (_, v) in zip(texts, lines) if v == "ok"]
    try:
        rows = JSONLTask().load("train", path=str(path))
    except DataError as exc:
        message = str(exc)
        if bad is not None:
            assert message.startswith(f"{path}:{bad}: "), (message[:200], bad)
        else:
            assert not good and message == f"{path}: empty file (no JSON rows)", message[:200]
        assert len(message) < 2000, "a clear message, not a dump of the line"
        return
    assert bad is None and good, "a file with a bad line (or no rows) must not load"
    assert [r["prompt"] for r in rows] == [g["prompt"] for g in good]


_answers = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


@SETTINGS
@given(answers=st.lists(st.one_of(_answers, st.just("<missing>")), min_size=1, max_size=6))
def test_read_jsonl_checks_column_presence_and_type_per_line(tmp_path_factory, answers):
    path = tmp_path_factory.mktemp("cols") / "rows.jsonl"
    rows = [{"prompt": "p"} if a == "<missing>" else {"prompt": "p", "answer": a} for a in answers]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first_bad = next((i for i, a in enumerate(answers, start=1) if not isinstance(a, str) or a == "<missing>"), None)
    try:
        out = read_jsonl(path, {"answer": str})
    except DataError as exc:
        assert first_bad is not None
        a = answers[first_bad - 1]
        expected = (
            "missing column 'answer'" if a == "<missing>" else f"column 'answer' must be str, got {type(a).__name__}"
        )
        assert str(exc).startswith(f"{path}:{first_bad}: {expected}"), str(exc)
        return
    assert first_bad is None and [r["answer"] for _, r in out] == answers


@pytest.fixture(scope="module")
def tiny():
    from tests.helpers_tiny import tiny_model_and_tokenizer

    return tiny_model_and_tokenizer(chat=False)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompts=st.lists(
        _prompt_text | st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=400).filter(str.strip),
        min_size=1,
        max_size=4,
    )
)
def test_rows_that_load_become_tensors_and_samples_without_error(tiny, tmp_path_factory, prompts):
    """Whatever text passed the loader reaches the model: tokenize, truncate, sample -- no torch error."""
    import torch

    from gspo.sampling import encode_prompts, sample, special_token_ids

    model, tok = tiny
    path = tmp_path_factory.mktemp("e2e") / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts), encoding="utf-8")
    rows = JSONLTask().load("train", path=str(path))
    ids, mask = encode_prompts(tok, [r["prompt"] for r in rows], max_prompt_tokens=64)
    eos, pad = special_token_ids(tok, model)
    roll = sample(
        model,
        ids,
        mask,
        max_new_tokens=3,
        temperature=1.0,
        eos_token_ids=eos,
        pad_token_id=pad,
        generator=torch.Generator().manual_seed(0),
    )
    assert roll.completion_ids_BT.shape[0] == len(rows) and ids.shape[1] <= 64


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file (no JSON rows)"),
        (b"\n  \n\t\n", "empty file (no JSON rows)"),
        (b'{"prompt": "ok"}\n\xff\xfe bad bytes\n', "unreadable"),
    ],
)
def test_empty_and_undecodable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        JSONLTask().load("train", path=str(path))


@pytest.mark.parametrize(
    "content", [b"this is not gzip", gzip.compress(b'{"prompt": "a"}\n' * 50)[:-12]], ids=["not-gzip", "truncated-gzip"]
)
def test_broken_gzip_files_are_data_errors_naming_the_file(tmp_path, content):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable")):
        JSONLTask().load("train", path=str(path))


def test_missing_file_and_directory_without_the_split_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        JSONLTask().load("train", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError, match=re.escape(f"no train.jsonl in directory {tmp_path}")):
        JSONLTask().load("train", path=str(tmp_path))


@pytest.mark.parametrize(
    "line", ["[" * 100_000, '{"prompt": "x", "n": 1' + "0" * 5000 + "}"], ids=["deep-nesting", "huge-int"]
)
def test_pathological_json_lines_are_data_errors_naming_the_line(tmp_path, line):
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2: ")):
        JSONLTask().load("train", path=str(path))


def test_prompt_with_a_lone_surrogate_is_a_data_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "fine"}\n{"prompt": "broken \\ud800 text"}\n')
    with pytest.raises(DataError, match=re.escape(f"{path}:2: ")):
        JSONLTask().load("train", path=str(path))


def test_bad_data_through_the_cli_is_one_error_line_not_a_traceback(tmp_path, capsys):
    from gspo.cli.main import main
    from tests.helpers_tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer(chat=False)
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": "4"\n')
    rc = main(
        [
            "train",
            "--model",
            str(tmp_path / "model"),
            "--task",
            "jsonl",
            "--data-path",
            str(data),
            "--eval-limit",
            "0",
            "--output-dir",
            str(tmp_path / "run"),
            "--progress",
            "false",
            "--chat",
            "no",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert f"gspo train: error: {data}:2: invalid JSON" in err and "Traceback" not in err
