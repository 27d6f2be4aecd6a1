"""Prompt encoding (left padded, chat templates, left truncation) and completion decoding.

``encode_prompts`` turns task prompts (plain strings, or chat message lists) into the left-padded
``(prompt_ids_BP, prompt_mask_BP)`` batch that :func:`gspo.sampling.sample` consumes;
``decode_completions`` turns a :class:`~gspo.sampling.Rollout` back into the strings a task scores.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

Prompt = str | list[dict[str, Any]]


def is_chat_prompt(prompt: Prompt) -> bool:
    """True for a chat message list (``[{"role": ..., "content": ...}, ...]``)."""
    return isinstance(prompt, (list, tuple)) and all(isinstance(m, dict) for m in prompt)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The text the model sees for one prompt: a chat list goes through the chat template."""
    if isinstance(prompt, str):
        return prompt
    if not is_chat_prompt(prompt):
        raise TypeError(f"a prompt must be a string or a list of message dicts, got {type(prompt).__name__}")
    if not has_chat_template(tokenizer):
        raise ValueError(
            "prompt is a chat message list but the tokenizer has no chat template; "
            "use plain-text prompts (e.g. --chat no) or a tokenizer with a chat_template"
        )
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def _pad_id(tokenizer) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def encode_prompts(
    tokenizer,
    prompts: Sequence[Prompt],
    *,
    max_prompt_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize ``prompts`` into a left-padded batch ``(prompt_ids_BP, prompt_mask_BP)`` (int64, CPU).

    A plain string is tokenized with the tokenizer's special tokens (e.g. BOS); a message list is
    rendered with the chat template (``add_generation_prompt=True``) and tokenized without adding
    special tokens again (the template writes them). A prompt longer than ``max_prompt_tokens`` keeps
    its *last* ``max_prompt_tokens`` tokens (the question and the generation prompt are at the end);
    the number of truncated prompts is logged as a warning.
    """
    if len(prompts) == 0:
        raise ValueError("encode_prompts: no prompts")
    if max_prompt_tokens is not None and max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be >= 1, got {max_prompt_tokens}")
    texts = [render_prompt(tokenizer, p) for p in prompts]
    rows: list[list[int]] = [[] for _ in prompts]
    for chat in (False, True):  # plain strings get the tokenizer's special tokens; templates wrote theirs
        idx = [i for i, p in enumerate(prompts) if isinstance(p, str) != chat]
        if idx:
            encoded = tokenizer([texts[i] for i in idx], add_special_tokens=not chat)["input_ids"]
            for i, ids in zip(idx, encoded):
                rows[i] = list(ids)
    truncated = 0
    for i, ids in enumerate(rows):
        if not ids:
            raise ValueError(f"prompt {i} encodes to zero tokens; every prompt needs at least one token")
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            rows[i] = ids[-max_prompt_tokens:]
            truncated += 1
    if truncated:
        logger.warning(
            "%d of %d prompts were longer than max_prompt_tokens=%d and were truncated from the left",
            truncated,
            len(prompts),
            max_prompt_tokens,
        )
    width = max(len(r) for r in rows)
    prompt_ids_BP = torch.full((len(rows), width), _pad_id(tokenizer), dtype=torch.long)
    prompt_mask_BP = torch.zeros((len(rows), width), dtype=torch.long)
    for b, ids in enumerate(rows):
        prompt_ids_BP[b, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        prompt_mask_BP[b, width - len(ids) :] = 1
    return prompt_ids_BP, prompt_mask_BP


def special_token_ids(tokenizer, model=None) -> tuple[list[int], int]:
    """``(eos_token_ids, pad_token_id)`` for sampling.

    EOS ids are the union of the tokenizer's EOS and the model's ``generation_config.eos_token_id``
    (an int or a list, e.g. Qwen's ``<|im_end|>`` and ``<|endoftext|>``). The pad id is the
    tokenizer's pad token, else the first EOS id (the completion mask, not the id, marks padding).
    """
    eos: list[int] = []
    candidates: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    gen_config = getattr(model, "generation_config", None)
    if gen_config is not None:
        candidates.append(getattr(gen_config, "eos_token_id", None))
    for value in candidates:
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in eos:
                eos.append(int(v))
    if not eos:
        raise ValueError("no EOS token: neither the tokenizer nor the model's generation_config defines one")
    pad = getattr(tokenizer, "pad_token_id", None)
    return eos, int(pad) if pad is not None else eos[0]


def completion_token_lists(rollout, *, strip_eos: bool = True) -> list[list[int]]:
    """Each row's completion tokens (mask == 1), without the final EOS token when ``strip_eos``."""
    ids_BT = rollout.completion_ids_BT.cpu()
    lengths_B = rollout.completion_mask_BT.sum(-1).cpu().tolist()
    finished_B = rollout.finished_B.cpu().tolist()
    out = []
    for b, n in enumerate(lengths_B):
        n = int(n) - (1 if strip_eos and finished_B[b] and n > 0 else 0)
        out.append(ids_BT[b, :n].tolist())
    return out


def decode_completions(tokenizer, rollout, *, skip_special_tokens: bool = True) -> list[str]:
    """The completion text of every row: real tokens only, the EOS token dropped."""
    return tokenizer.batch_decode(completion_token_lists(rollout), skip_special_tokens=skip_special_tokens)


__all__ = [
    "Prompt",
    "completion_token_lists",
    "decode_completions",
    "encode_prompts",
    "has_chat_template",
    "is_chat_prompt",
    "render_prompt",
    "special_token_ids",
]
