"""Config validation, YAML files and command-line overrides."""

import dataclasses

import pytest

from gspo.config import ConfigError, GSPOConfig, field_docs, from_dict, load_config, to_yaml
from gspo.config.fields import coerce


def test_every_field_has_a_docstring():
    docs = field_docs(GSPOConfig)
    missing = [f.name for f in dataclasses.fields(GSPOConfig) if not docs.get(f.name)]
    assert not missing


def test_defaults_are_valid_and_the_papers():
    cfg = GSPOConfig().validate()
    assert cfg.clip_range == (3e-4, 4e-4)
    assert GSPOConfig(algorithm="grpo").clip_range == (0.2, 0.27)
    assert cfg.num_minibatches == 4 and cfg.kl_coef == 0.0 and cfg.setting("aggregation") == "seq-mean"


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("group_size", 1, ">= 2"),
        ("learning_rate", 0.0, "> 0"),
        ("learning_rate", float("nan"), "finite"),
        ("clip_low", 1.5, "[0, 1]"),
        ("temperature", 0.0, "> 0"),
        ("top_p", 0.0, "(0, 1]"),
        ("num_minibatches", 3, "must divide"),
        ("max_steps", 0, ">= 1"),
        ("device", "tpu", "cuda"),
        ("reward_weights", [1.0, 2.0], "one weight per reward"),
        ("kl_coef", -0.1, ">= 0"),
        ("micro_batch_size", 0, ">= 1"),
    ],
)
def test_bad_values_name_the_field_and_what_is_allowed(field, value, allowed):
    with pytest.raises(ConfigError) as err:
        GSPOConfig(**{field: value}).validate()
    assert str(err.value).startswith(f"{field}:") and allowed in str(err.value)


@pytest.mark.parametrize(
    "field, raw, message",
    [
        ("algorithm", "trpo", "one of ['gspo', 'gspo-token', 'grpo'"),
        ("group_size", "eight", "integer"),
        ("group_size", "2.5", "integer"),
        ("learning_rate", "fast", "number"),
        ("resume", "maybe", "true or false"),
        ("aggregation", "sum", "one of"),
    ],
)
def test_type_errors_name_the_field(field, raw, message):
    with pytest.raises(ConfigError, match=rf"^{field}: .*{message.replace('[', '.').replace(']', '.')}"):
        from_dict(GSPOConfig, {field: raw})


def test_unknown_field_is_an_error_listing_valid_ones():
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(GSPOConfig, {"lr": 1e-3})


def test_coercion_of_command_line_strings():
    cfg = from_dict(
        GSPOConfig,
        {
            "group_size": "4",
            "learning_rate": "1e-4",
            "resume": "true",
            "clip_low": "none",
            "rewards": "task,format_boxed",
            "reward_weights": "1,0.5",
            "max-steps": "3",
        },
    )
    assert cfg.group_size == 4 and cfg.learning_rate == 1e-4 and cfg.resume is True and cfg.clip_low is None
    assert cfg.rewards == ["task", "format_boxed"] and cfg.reward_weights == [1.0, 0.5] and cfg.max_steps == 3
    assert coerce("num_threads", "null", int | None) is None


def test_yaml_round_trip_and_override_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(GSPOConfig(group_size=4, max_steps=7)))
    cfg = load_config(str(path), {"max_steps": "9"})
    assert cfg.group_size == 4 and cfg.max_steps == 9


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("group_size: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.yaml"))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(listy))


def test_shipped_default_yaml_mirrors_the_dataclass():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    assert shipped.read_text() == to_yaml(GSPOConfig()), (
        "regenerate with: gspo train --print-config > configs/default.yaml"
    )
