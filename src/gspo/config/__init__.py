"""Configuration: dataclasses with a docstring per field, YAML files, ``--field value`` overrides."""

from gspo.config.fields import ConfigError, add_config_arguments, field_docs, from_dict, load_yaml, to_yaml
from gspo.config.run import RunConfig, use_chat_template
from gspo.config.train import GSPOConfig, load_config

__all__ = [
    "ConfigError",
    "GSPOConfig",
    "RunConfig",
    "use_chat_template",
    "add_config_arguments",
    "field_docs",
    "from_dict",
    "load_config",
    "load_yaml",
    "to_yaml",
]
