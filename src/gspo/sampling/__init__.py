"""Batched generation with a KV cache, returning the sampler's per-token log-probs.

- :func:`encode_prompts`: strings / chat message lists -> left-padded ``(prompt_ids_BP, prompt_mask_BP)``;
- :func:`sample`: the decoding loop (temperature, top-k, top-p, greedy, seeded) -> :class:`Rollout`;
- :func:`decode_completions`: a rollout's completions as text (EOS dropped);
- :func:`position_ids_from_mask`: the position ids a training forward should use too;
- :func:`special_token_ids`: ``(eos_token_ids, pad_token_id)`` from a tokenizer and model.
"""

from gspo.sampling.generate import Rollout, position_ids_from_mask, sample
from gspo.sampling.prompts import (
    completion_token_lists,
    decode_completions,
    encode_prompts,
    has_chat_template,
    is_chat_prompt,
    render_prompt,
    special_token_ids,
)

__all__ = [
    "Rollout",
    "completion_token_lists",
    "decode_completions",
    "encode_prompts",
    "has_chat_template",
    "is_chat_prompt",
    "position_ids_from_mask",
    "render_prompt",
    "sample",
    "special_token_ids",
]
