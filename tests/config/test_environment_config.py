"""The environment fields of GSPOConfig: validated, named in errors, set from the command line."""

import pytest

from gspo.cli.main import main
from gspo.config import ConfigError, GSPOConfig, load_config


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(max_turns=0), "max_turns"),
        (dict(max_turn_tokens=0), "max_turn_tokens"),
        (dict(environment_timeout_s=-1), "environment_timeout_s"),
        (dict(environment_options="[1, 2]"), "environment_options"),
        (dict(environment="guess", turn_advantages=True), "turn_advantages"),  # GSPO: one advantage per episode
    ],
)
def test_bad_environment_settings_name_their_field(overrides, field):
    with pytest.raises(ConfigError) as err:
        GSPOConfig(**overrides).validate()
    assert err.value.field == field


def test_environment_settings_from_the_command_line():
    config = load_config(
        None,
        {"environment": "guess", "environment_options": '{"high": 9}', "max_turns": "3", "turn_advantages": "true",
         "algorithm": "gspo-token", "environment_errors": "end"},
    )  # fmt: skip
    assert config.environment_options == {"high": 9} and config.max_turns == 3 and config.turn_advantages is True
    assert GSPOConfig(environment="guess", algorithm="dapo").validate().setting("dynamic_sampling")


def test_print_config_lists_the_environment_fields(capsys):
    assert main(["train", "--environment", "guess", "--max-turns", "5", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "environment: guess" in out and "max_turns: 5" in out and "environment_errors: raise" in out
