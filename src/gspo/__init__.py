"""gspo: Group Sequence Policy Optimization for Hugging Face causal language models.

Package layout (each folder is one layer of the system):

- ``gspo.losses``     the algorithm core: pure tensor functions (policy losses, group advantages,
                      KL, chunked log-probs). No model, no config object.
- ``gspo.sampling``   batched generation with a KV cache, returning the sampler's log-probs.
- ``gspo.rewards``    reward functions (math by value, code in a sandbox, multiple choice, format).
- ``gspo.tasks``      datasets + prompt formats + the task's own scorer (reused as its reward).
- ``gspo.trainer``    the RL loop, checkpoints, metrics, plots.
- ``gspo.evaluation`` ``gspo eval``: accuracy and pass@k per task.
- ``gspo.models``     model loading and preparation (embedded tiny model, SmolLM2 from GGUF).
- ``gspo.config``     dataclass configs, YAML and ``--field value`` overrides, validation.
- ``gspo.cli``        the ``gspo`` command.
"""

__version__ = "0.1.0"
